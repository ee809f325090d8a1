"""Media events to the control plane: what happened on the node, on the media-events queue.

Events go out in order from one task, so a slow SQS call never holds up the mixer and
a burst (a Space ending) does not open one thread per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

log = logging.getLogger("media_node.events")

SQS_BATCH = 10

EVENT_TYPES = frozenset(
    {
        "participant_connected",
        "participant_left",
        "speaking_started",
        "speaking_stopped",
        "node_draining",
    }
)


class MediaEvents:
    def __init__(self, sqs: Any, queue_url: str | None, node_id: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._node_id = node_id
        self._pending: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._queue_url is None:
            log.warning("MEDIA_EVENTS_QUEUE_URL is not set: media events are only logged")
        self._task = asyncio.create_task(self._run(), name="media-events")

    def publish(self, event_type: str, **fields: Any) -> None:
        if event_type not in EVENT_TYPES:
            raise ValueError(f"not a media event: {event_type}")
        event = {"v": 1, "type": event_type, "node_id": self._node_id, **fields}
        event["at"] = round(time.time(), 3)
        log.info("media event", extra={"event": event})
        self._pending.put_nowait(event)

    async def close(self, timeout: float = 5.0) -> None:
        """Send what is still pending (the last participant_left events), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._pending.join(), timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            batch = [await self._pending.get()]
            while len(batch) < SQS_BATCH and not self._pending.empty():
                batch.append(self._pending.get_nowait())
            try:
                if self._queue_url is not None:
                    await asyncio.to_thread(self._send, batch)
            except Exception:
                log.exception("could not send media events", extra={"events": batch})
            finally:
                for _ in batch:
                    self._pending.task_done()

    def _send(self, batch: list[dict[str, Any]]) -> None:
        response = self._sqs.send_message_batch(
            QueueUrl=self._queue_url,
            Entries=[
                {"Id": str(i), "MessageBody": json.dumps(event)} for i, event in enumerate(batch)
            ],
        )
        for failure in response.get("Failed", []):
            log.error("SQS refused a media event", extra={"failure": failure})
