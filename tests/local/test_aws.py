"""The embedded AWS: DynamoDB reads run together and a write alone; moto finds each
service's backend once, not on every request."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from local.aws import EmbeddedAws, atomic_dynamodb


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


def test_each_service_is_looked_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import moto.backends
    listed: list[int] = []
    real = moto.backends.list_of_moto_modules

    def counting() -> Iterable[str]:
        listed.append(1)
        return real()

    monkeypatch.setattr(moto.backends, "list_of_moto_modules", counting)
    aws = EmbeddedAws().start()
    try:
        dynamodb = boto3.client("dynamodb", endpoint_url=aws.url)
        sqs = boto3.client("sqs", endpoint_url=aws.url)
        for _ in range(2):
            dynamodb.list_tables()
            sqs.list_queues()
        first = len(listed)
        for _ in range(5):
            dynamodb.list_tables()
            sqs.list_queues()
        # Ten more requests of the same two services list moto's package no more.
        assert first >= 1
        assert len(listed) == first
    finally:
        aws.stop()
