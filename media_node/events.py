"""Media events to the control plane: what happened on the node, on the media-events queue.

Events go out in order from one task, so a slow SQS call never holds up the mixer and
a burst (a Space ending) does not open one thread per event. A send that fails is
tried again with backoff, the events after it waiting their turn, for about a minute
(RETRY_SECONDS); only then is the batch given up, logged and counted. The node's
metrics count both (EventsRetried, EventsDropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from typing import Any

from botocore.config import Config as BotoConfig

from .metrics import Counters

log = logging.getLogger("media_node.events")

SQS_BATCH = 10
# Waits before each new try of a batch SQS refused (jittered): about a minute in all.
RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
# Each try fails fast, so that the backoff above, not botocore's, paces the retries.
SQS_CLIENT_CONFIG = BotoConfig(connect_timeout=2, read_timeout=5,
                               retries={"max_attempts": 1, "mode": "standard"})

EVENT_TYPES = frozenset(
    {
        "participant_connected",
        "participant_left",
        "speaking_started",
        "speaking_stopped",
        "node_draining",
        # A room's HLS run wrote its last segment (hls/service.py).
        "hls_finished",
    }
)


class MediaEvents:
    def __init__(self, sqs: Any, queue_url: str | None, node_id: str,
                 counters: Counters | None = None) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._node_id = node_id
        self.counters = counters if counters is not None else Counters()
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
        unsent = self._pending.qsize()
        if unsent:
            self.counters.events_dropped += unsent
            log.error("media events not sent before the node stopped",
                      extra={"count": unsent})

    async def _run(self) -> None:
        while True:
            batch = [await self._pending.get()]
            while len(batch) < SQS_BATCH and not self._pending.empty():
                batch.append(self._pending.get_nowait())
            try:
                if self._queue_url is not None:
                    await self._deliver(batch)
            finally:
                for _ in batch:
                    self._pending.task_done()

    async def _deliver(self, batch: list[dict[str, Any]]) -> None:
        """Send `batch`, trying again what SQS refuses; give it up after the last try."""
        why = ""
        for delay in (0.0, *RETRY_SECONDS):
            if delay:
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                self.counters.events_retried += len(batch)
            try:
                batch = await asyncio.to_thread(self._send, batch)
            except Exception as exc:
                why = f"{type(exc).__name__}: {exc}"
                continue
            if not batch:
                return
            why = "SQS refused some of the batch"
        self.counters.events_dropped += len(batch)
        log.error("media events given up after every retry",
                  extra={"events": batch, "why": why})

    def _send(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The events SQS did not take."""
        response = self._sqs.send_message_batch(
            QueueUrl=self._queue_url,
            Entries=[
                {"Id": str(i), "MessageBody": json.dumps(event)} for i, event in enumerate(batch)
            ],
        )
        return [batch[int(failure["Id"])] for failure in response.get("Failed", [])]
