"""A worker's HLS: the S3 store its rooms share, and each owned room's output.

Relay rooms never package: the Space's owner does, once (node.py opens an output only
for a room it mixes)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import boto3

from ..events import MediaEvents
from ..hls_config import HlsSettings
from .output import HlsOutput, Stage
from .store import S3_CLIENT_CONFIG, S3Store, Store

log = logging.getLogger("media_node.hls")

HLS_FINISHED = "hls_finished"


def stage_of(room: Any) -> Stage:
    """Who of the room is on stage (connected, may publish), speaking and muted."""

    def look() -> tuple[tuple[tuple[str, str], ...], tuple[str, ...], tuple[str, ...]]:
        stage: set[tuple[str, str]] = set()
        speaking: set[str] = set()
        muted: set[str] = set()
        for participant in room.participants.values():
            if not (participant.may_publish and participant.connected):
                continue
            stage.add((participant.user_id, participant.role))
            if participant.vad.speaking:
                speaking.add(participant.user_id)
            if participant.muted:
                muted.add(participant.user_id)
        return tuple(sorted(stage)), tuple(sorted(speaking)), tuple(sorted(muted))

    return look


class Packaging:
    def __init__(self, settings: HlsSettings, store: Store, events: MediaEvents | None) -> None:
        self.settings = settings
        self._store = store
        self._events = events
        self._outputs: set[HlsOutput] = set()

    @classmethod
    def from_env(cls, events: MediaEvents | None) -> Packaging | None:
        settings = HlsSettings.from_env()
        if settings is None:
            return None
        client = boto3.client("s3", config=S3_CLIENT_CONFIG)
        log.info("packaging HLS", extra={"bucket": settings.bucket, "prefix": settings.prefix})
        return cls(settings, S3Store(client, settings.bucket, settings.upload_threads), events)

    def open(self, room: Any, recording: bool) -> HlsOutput:
        output = HlsOutput(room.space_id, recording, self.settings, self._store,
                           stage_of(room), self._finished)
        self._outputs.add(output)
        return output

    def _finished(self, output: HlsOutput) -> None:
        self._outputs.discard(output)
        # The control plane settles the Space's HLS once it has ended (the replay, or
        # the segments' deletion), which this lets it do at once (section 9).
        if self._events is not None and output.run is not None:
            self._events.publish(HLS_FINISHED, space_id=output.space_id, run=output.run,
                                 ended=output.ended, segments=output.stats.uploaded)

    async def close(self, timeout: float) -> None:
        """Waits for closed rooms' last writes (up to `timeout`), then drops the rest."""
        pending = list(self._outputs)
        if pending:
            _, late = await asyncio.wait([asyncio.ensure_future(o.finished()) for o in pending],
                                         timeout=timeout)
            for output in pending:
                if output in self._outputs:
                    output.cancel()
            if late:
                log.error("HLS writes unfinished at the worker's stop",
                          extra={"rooms": len(late)})
        close = getattr(self._store, "close", None)
        if close is not None:
            close()
