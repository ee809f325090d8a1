"""The embedded AWS's DynamoDB lock: reads run together, a write runs alone."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from local.aws import atomic_dynamodb


class Recorder:
    """A WSGI app that notes who is inside it at once."""

    def __init__(self, reads_to_meet: int = 0) -> None:
        self.inside: list[str] = []
        self.overlaps: list[list[str]] = []
        self._lock = threading.Lock()
        # Reads wait here until `reads_to_meet` of them are inside together.
        self.meeting = threading.Barrier(reads_to_meet, timeout=5) if reads_to_meet else None

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        action = environ["HTTP_X_AMZ_TARGET"].rpartition(".")[2]
        with self._lock:
            self.inside.append(action)
            self.overlaps.append(list(self.inside))
        if action == "GetItem" and self.meeting is not None:
            self.meeting.wait()
        else:
            threading.Event().wait(0.05)
        with self._lock:
            self.inside.remove(action)
        return [b"{}"]


def _call(app: Callable[..., Iterable[bytes]], action: str) -> None:
    list(app({"HTTP_X_AMZ_TARGET": f"DynamoDB_20120810.{action}"}, lambda *a: None))


def test_reads_run_together() -> None:
    recorder = Recorder(reads_to_meet=4)
    app = atomic_dynamodb(recorder)
    with ThreadPoolExecutor(4) as pool:
        # Serialized, the first read would wait at the barrier alone and time out.
        list(pool.map(lambda _: _call(app, "GetItem"), range(4)))
    assert max(len(seen) for seen in recorder.overlaps) == 4


def test_a_write_never_runs_beside_another_request() -> None:
    recorder = Recorder()
    app = atomic_dynamodb(recorder)
    actions = ["GetItem", "GetItem", "UpdateItem", "TransactWriteItems", "PutItem"] * 4
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda action: _call(app, action), actions))
    writes = [seen for seen in recorder.overlaps
              if any(a != "GetItem" for a in seen)]
    assert len(writes) >= 12
    assert all(len(seen) == 1 for seen in writes)
