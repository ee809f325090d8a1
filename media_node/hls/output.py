"""One room's HLS: the mix encoded and cut on the room's tick, the uploads on a task of
their own.

The tick only encodes (about 1% of a core) and queues what it made; it never waits on
S3. The upload task writes each segment, then the live playlist listing only what is
written, so a player never asks for a segment that is not there yet. While S3 refuses,
segments queue in memory (about 6 KB a second) and are written, in order, once it
takes them again; the room goes on meanwhile.

A room's segments are one *run*: one encoder, one clock, keys under the run's id (the
epoch milliseconds of its first sample). A room opened again for the same Space (its
worker died, or everyone left and came back) is a new run that continues the Space's
live playlist after a discontinuity; the replay is every run's segments in order
(docs/media-contract.md, section 9)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..hls_config import (
    LIVE_PLAYLIST,
    PLAYLIST_CACHE,
    PLAYLIST_TYPE,
    RECORDED_TAG,
    SEGMENT_CACHE,
    SEGMENT_TYPE,
    HlsSettings,
)
from .playlist import Entry, LivePlaylist, StageState, parse
from .segments import SAMPLE_RATE, Segment, Segmenter
from .store import Store, StoredObject, StoreError

log = logging.getLogger("media_node.hls")

# The stage is looked at every this many ticks (240 ms): often enough for "speaking" to
# follow speech, rarely enough to cost nothing in a room of thousands.
STAGE_TICKS = 12
# Waits between tries of a write S3 refused; then every last one, for as long as it
# takes (or, once the room closed, until HlsSettings.close_timeout_seconds).
RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 4.0)

Stage = Callable[[], tuple[tuple[tuple[str, str], ...], tuple[str, ...], tuple[str, ...]]]


@dataclass
class OutputStats:
    segments: int = 0
    uploaded: int = 0
    retries: int = 0
    abandoned: int = 0
    # Segments dropped unwritten because too many were waiting (S3 refusing for long).
    dropped: int = 0


class GiveUp(Exception):
    """A closed room's writes kept failing past its time: what is left is dropped."""


class HlsOutput:
    def __init__(self, space_id: str, recording: bool, settings: HlsSettings, store: Store,
                 stage: Stage, on_finished: Callable[[HlsOutput], None]) -> None:
        self.space_id = space_id
        self.recording = recording
        self.stats = OutputStats()
        self._settings = settings
        self._store = store
        self._stage = stage
        self._on_finished = on_finished
        self._prefix = settings.space_prefix(space_id)
        self._tagging = f"{RECORDED_TAG}={'true' if recording else 'false'}"
        self._segmenter = Segmenter(settings.bitrate, settings.segment_seconds)
        self._target = max(1, round(self._segmenter.segment_seconds))
        # Wall time of the mix's first sample (pts 0), set by the first tick.
        self._started_at: float | None = None
        self.run: int | None = None
        self._mixed = 0
        self._ticks = 0
        self._queue: deque[tuple[StoredObject, Entry]] = deque()
        self._states: list[StageState] = []
        self._wake = asyncio.Event()
        self._closed = False
        self._closed_at = 0.0
        self._ended = False
        self._failed = False
        self._task = asyncio.create_task(self._upload(), name=f"hls-{space_id}")

    # -- on the tick ----------------------------------------------------------------

    def push(self, mix: npt.NDArray[np.int32]) -> None:
        """The room's mix of one tick. A failure here stops this room's HLS, never the
        room: WebRTC listeners must not pay for it."""
        if self._closed or self._failed:
            return
        try:
            if self._started_at is None:
                self._started_at = time.time()
            self._publish(self._segmenter.push(mix))
            self._mixed += mix.size
            self._ticks += 1
            if self._ticks % STAGE_TICKS == 1:
                self._look_at_stage()
        except Exception:
            self._failed = True
            log.exception("HLS packaging failed: this room goes on without it",
                          extra={"space_id": self.space_id})

    def _look_at_stage(self) -> None:
        assert self._started_at is not None
        stage, speaking, muted = self._stage()
        state = StageState(self._started_at + self._mixed / SAMPLE_RATE, stage, speaking, muted)
        if not state.same_as(self._states[-1] if self._states else None):
            self._states.append(state)
            self._wake.set()

    def _publish(self, segments: list[Segment]) -> None:
        for segment in segments:
            assert self._started_at is not None
            began = self._started_at + segment.first_pts / SAMPLE_RATE
            if self.run is None:
                self.run = round(began * 1000)
            name = f"{self.run}/{segment.index:06d}-{segment.samples}.ts"
            item = StoredObject(f"{self._prefix}/{name}", segment.data, SEGMENT_TYPE,
                                SEGMENT_CACHE, self._tagging)
            self._queue.append((item, Entry(name, segment.seconds, began,
                                            discontinuity=segment.index == 0)))
            self.stats.segments += 1
            if len(self._queue) > self._settings.max_queued_segments:
                self._drop_oldest_waiting()
        if segments:
            self._wake.set()

    def _drop_oldest_waiting(self) -> None:
        """The oldest segment not being written goes; the one after it starts with a
        discontinuity (the replay's settle marks the gap too, from the keys)."""
        writing = self._queue.popleft()  # perhaps being written now: it stays
        self._queue.popleft()
        item, entry = self._queue.popleft()
        self._queue.appendleft((item, Entry(entry.uri, entry.seconds, entry.program_date,
                                            discontinuity=True)))
        self._queue.appendleft(writing)
        self.stats.dropped += 1
        if self.stats.dropped == 1 or self.stats.dropped % 60 == 0:
            log.error("HLS segments dropped: S3 has refused them too long",
                      extra={"space_id": self.space_id, "dropped": self.stats.dropped})

    # -- the end ----------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self._ended

    def space_ended(self) -> None:
        """The Space itself ended (not just this room): the playlist gets its end."""
        self._ended = True

    def close(self) -> None:
        """The room closed: the last segment is cut and, with the final playlist, left
        to the upload task, which the worker waits for when it stops."""
        if self._closed:
            return
        self._closed = True
        self._closed_at = time.monotonic()
        if not self._failed and self._started_at is not None:
            try:
                self._publish(self._segmenter.finish())
            except Exception:
                log.exception("HLS packaging failed at the end", extra={"space_id": self.space_id})
        self._wake.set()

    async def finished(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._task)

    def cancel(self) -> None:
        self._task.cancel()

    # -- the uploads --------------------------------------------------------------------

    async def _upload(self) -> None:
        playlist_key = f"{self._prefix}/{LIVE_PLAYLIST}"
        try:
            playlist = await self._continue(playlist_key)
            while True:
                await self._wake.wait()
                self._wake.clear()
                changed = False
                while self._queue:
                    item, entry = self._queue[0]
                    await self._put(item)
                    self._queue.popleft()
                    self.stats.uploaded += 1
                    # The first segment of a run follows another run's only when there
                    # is one before it.
                    if entry.discontinuity and not playlist.entries and \
                            playlist.media_sequence == 0:
                        entry = Entry(entry.uri, entry.seconds, entry.program_date)
                    playlist.add(entry)
                    changed = True
                while self._states:
                    changed = playlist.note(self._states.pop(0)) or changed
                done = self._closed and not self._queue
                if done and self._ended:
                    playlist.ended = True
                    changed = True
                if changed and playlist.entries:
                    await self._put(StoredObject(
                        playlist_key, playlist.render().encode(), PLAYLIST_TYPE,
                        PLAYLIST_CACHE, self._tagging))
                if done:
                    break
        except GiveUp:
            log.error("HLS writes given up after the room closed",
                      extra={"space_id": self.space_id, "unwritten": len(self._queue)})
            self.stats.abandoned = len(self._queue)
        finally:
            log.info("hls run finished", extra={"space_id": self.space_id, "run": self.run,
                                                "ended": self._ended,
                                                **self.stats.__dict__})
            self._on_finished(self)

    async def _continue(self, key: str) -> LivePlaylist:
        """The Space's live playlist as an earlier run left it, to carry on; a new one
        when there is none. If it cannot be read, numbering starts from the clock,
        which is above any earlier run's (they count one a segment, from 0)."""
        window, target = self._settings.live_segments, self._target
        for delay in (*RETRY_SECONDS, None):
            try:
                text = await self._store.get(key)
                if text is None:
                    return LivePlaylist(window, target)
                playlist = parse(text.decode(), window, target)
                # An end only a later run of the same Space can follow is not one (a
                # Space that ended opens no room).
                playlist.ended = False
                return playlist
            except (StoreError, ValueError, UnicodeDecodeError) as exc:
                log.warning("could not read the live playlist to continue",
                            extra={"space_id": self.space_id, "why": str(exc)})
                if delay is None or self._closed:
                    break
                await asyncio.sleep(delay)
        now = int(time.time())
        return LivePlaylist(window, target, media_sequence=now, discontinuity_sequence=now)

    async def _put(self, item: StoredObject) -> None:
        tries = 0
        while True:
            try:
                await self._store.put(item)
                return
            except StoreError as exc:
                self.stats.retries += 1
                if tries == 0 or tries % 10 == 0:
                    log.warning("HLS write refused; trying again",
                                extra={"space_id": self.space_id, "key": item.key,
                                       "why": str(exc), "tries": tries + 1})
            if self._closed and time.monotonic() - self._closed_at > \
                    self._settings.close_timeout_seconds:
                raise GiveUp
            await asyncio.sleep(RETRY_SECONDS[min(tries, len(RETRY_SECONDS) - 1)])
            tries += 1
