"""A speaker's inbound audio: RTP packets in, at most one decoded 20 ms frame per mixer tick out.

The policy, and why (docs/performance.md has the measurements):

- Packets are kept as they arrive (Opus payloads, ordered by extended sequence number) and
  decoded only when the mixer takes a frame, so a packet that comes late but in time
  costs nothing and reordering is undone before the decoder sees anything.
- The delay is set by measured jitter, not fixed. Each packet's arrival offset (arrival
  time minus its RTP timestamp in seconds) is tracked over the last 2 s; a packet is due
  once the slowest offset of that window (plus a few ms) has passed since its timestamp.
  On a clean network the spread is a few ms, so a packet plays at the first tick after it
  arrives: 0-20 ms (10 on average) of waiting for the room's clock, plus that margin.
  On a jittery one the spread, and with it the delay, grows to cover it, up to 200 ms;
  packets later than that are concealed rather than waited for.
- Only arrivals seen while the room keeps its schedule are measured. When this process
  is busy or not scheduled, packets are handled late, but so is the tick that needs
  them: they are buffered as usual, and their timing, which says nothing about the
  network, is left out. Stalls of the node itself do not grow the delay.
- The delay follows the measure at frame boundaries without audible cuts: a quiet frame
  is played twice when the playout runs ahead of what the jitter calls for, and a quiet
  frame is dropped when every tick of the last second played audio more than a frame
  older than needed. A packet missing at its tick is concealed with libopus' own
  concealment; if it then turns up, it is played and the delay has grown by a frame.
- A stream that goes quiet (end of a talk spurt, DTX, a stall) is concealed for 60 ms and
  then yields nothing; its next packet starts afresh: decoder reset, delay re-anchored,
  anything older than 100 ms beyond the due point discarded.

A speaker with nothing due simply adds nothing to the tick: the mixer never waits.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import av
import numpy as np

from .mixer import FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE, Samples, level_dbfs

# Headroom over the measured spread: jitter the window has not seen yet, and the slop of
# the room's timer.
MARGIN_SECONDS = 0.004
# 2 s of 20 ms packets: jitter that recurs within that stays covered; a one-off hiccup
# (a stall of the sender, the network or this node) stops adding delay 2 s later.
WINDOW_PACKETS = 100
# Jitter beyond this is concealed, not waited for; a packet this far off the window's
# fastest one means the sender's timeline moved (a pause, a restart), and the measure
# starts again from it.
MAX_DELAY_SECONDS = 0.2
# Concealed frames in a row with nothing buffered before the stream counts as gone quiet.
MAX_CONCEALED = 3
# After a second of ticks that all played audio more than a frame older than needed,
# quiet frames are dropped while a whole frame is spare; more than this many frames too
# old restarts the stream at once (a backlog after a stall is dropped, not played late).
SHRINK_TICKS = 50
MAX_EXCESS_FRAMES = 5
# Frames below this level (the voice detector's "stopped" threshold) may be repeated or
# dropped to move the delay.
QUIET_DBFS = -50.0
# Bounds the memory a sender can make the buffer hold: far more than the delay cap.
MAX_PACKETS = 64
# A sequence number this far from the last one is a new stream, not loss or reordering.
RESTART_SEQUENCE_JUMP = 3000
# A tick this far behind the schedule means the room skipped ahead (or this speaker was
# not asked for a while): the schedule is taken up again from it. Ticks that all ran
# late for 100 ms mean the same, by less: the schedule moves up by the least. Moving it
# too far costs nothing (the next tick on time pulls it back); lagging behind the room's
# real schedule would make every packet look early.
MAX_TICK_LATENESS = 0.2
RESYNC_TICKS = 5

NO_SAMPLES: Samples = np.zeros(0, dtype=np.int16)


def _wrapped(delta: int, bits: int) -> int:
    """A difference of two wrapping counters as the nearest signed value."""
    half = 1 << (bits - 1)
    return ((delta + half) & ((1 << bits) - 1)) - half


def concealment_packet(payload: bytes) -> bytes:
    """An Opus packet that makes libopus conceal as much audio as `payload` carries.

    FFmpeg's libopus wrapper never asks for concealment (an empty packet means end of
    stream to it), but libopus conceals any frame of 0 bytes: the same TOC byte with
    empty frames asks for exactly the lost packet's duration, in its mode.
    """
    toc = payload[0]
    code = toc & 0x03
    if code == 2:
        return bytes([toc, 0])
    if code == 3 and len(payload) > 1:
        # Constant-size frames, no padding: only the frame count is kept.
        return bytes([toc, payload[1] & 0x3F])
    return bytes([toc & 0xFC if code == 3 else toc])


class OpusDecoder:
    """libopus through PyAV, decoding to mono at 48 kHz whatever the sender's channels."""

    def __init__(self) -> None:
        codec = av.CodecContext.create("libopus", "r")
        assert isinstance(codec, av.AudioCodecContext)
        codec.sample_rate = SAMPLE_RATE
        codec.layout = "mono"
        self._codec = codec

    def decode(self, payload: bytes) -> Samples:
        parts = [
            frame.to_ndarray().reshape(-1).astype(np.int16, copy=False)
            for frame in self._codec.decode(av.Packet(payload))
        ]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else NO_SAMPLES

    def reset(self) -> None:
        # libopus' own reset: a new talk spurt must not be shaped by the last one's state.
        self._codec.flush_buffers()


class ArrivalSpread:
    """The smallest and largest value over the last `size` added, in O(1) per value."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._count = 0
        self._low: deque[tuple[int, float]] = deque()
        self._high: deque[tuple[int, float]] = deque()

    @property
    def empty(self) -> bool:
        return not self._low

    @property
    def low(self) -> float:
        return self._low[0][1]

    @property
    def high(self) -> float:
        return self._high[0][1]

    def add(self, value: float) -> None:
        index = self._count
        self._count += 1
        while self._low and self._low[-1][1] >= value:
            self._low.pop()
        self._low.append((index, value))
        while self._high and self._high[-1][1] <= value:
            self._high.pop()
        self._high.append((index, value))
        expired = index - self._size
        if self._low[0][0] <= expired:
            self._low.popleft()
        if self._high[0][0] <= expired:
            self._high.popleft()

    def clear(self) -> None:
        self._low.clear()
        self._high.clear()


class Packet(NamedTuple):
    timestamp: int
    payload: bytes


@dataclass
class JitterStats:
    """What the buffer did, for the participant's log line when it leaves."""

    played: int = 0
    concealed: int = 0
    late: int = 0
    repeated: int = 0
    shed: int = 0
    starts: int = 0


class JitterBuffer:
    def __init__(self) -> None:
        self.stats = JitterStats()
        self._decoder = OpusDecoder()
        self._spread = ArrivalSpread(WINDOW_PACKETS)
        self._packets: dict[int, Packet] = {}
        self._ssrc: int | None = None
        # Extended (unwrapped) sequence number and timestamp of the newest packet.
        self._top_sequence = 0
        self._top_timestamp = 0
        self._playing = False
        # Packets below this were played, concealed or given up on.
        self._next_sequence = 0
        self._pending = NO_SAMPLES
        self._pending_timestamp: int | None = None
        self._last_payload = b""
        # Frames concealed since the last packet played because nothing had arrived.
        self._owed = 0
        self._least_lag = math.inf
        self._lag_ticks = 0
        # When the last tick was due on the room's clock, as its calls show it.
        self._tick: float | None = None
        self._least_lateness = math.inf
        self._lateness_ticks = 0

    def push(
        self, ssrc: int, sequence: int, timestamp: int, payload: bytes, arrival: float
    ) -> None:
        """Keep one RTP packet's Opus payload; `arrival` on the clock `pop_frame` is given."""
        if ssrc != self._ssrc:
            self._restart_stream(ssrc, sequence, timestamp)
        sequence = self._top_sequence + _wrapped(sequence - self._top_sequence, 16)
        if abs(sequence - self._top_sequence) > RESTART_SEQUENCE_JUMP:
            self._restart_stream(ssrc, sequence & 0xFFFF, timestamp)
            sequence = self._top_sequence
        timestamp = self._top_timestamp + _wrapped(timestamp - self._top_timestamp, 32)
        if sequence > self._top_sequence:
            self._top_sequence, self._top_timestamp = sequence, timestamp

        if self._tick is None or arrival <= self._tick + FRAME_SECONDS:
            offset = arrival - timestamp / SAMPLE_RATE
            spread = self._spread
            if not spread.empty and not (
                spread.high - MAX_DELAY_SECONDS <= offset <= spread.low + MAX_DELAY_SECONDS
            ):
                spread.clear()
            spread.add(offset)

        if sequence < self._next_sequence or sequence in self._packets:
            # Its slot was played or concealed already (or it is a duplicate).
            self.stats.late += 1
            return
        self._packets[sequence] = Packet(timestamp, payload)
        if len(self._packets) > MAX_PACKETS:
            del self._packets[min(self._packets)]

    def clear(self) -> None:
        """Forget everything buffered (a mute, a demotion); the jitter measure stays."""
        self._packets.clear()
        self._stop()

    def pop_frame(self, now: float) -> Samples | None:
        """The frame to mix at the tick run at `now`, or None when nothing is due."""
        now = self._on_tick(now)
        if self._spread.empty:
            return None
        due = self._due(now)
        if not self._playing and not self._start(due):
            return None
        head = self._head_timestamp()
        lag = due - head if head is not None else None
        if lag is not None and lag > MAX_EXCESS_FRAMES * FRAME_SAMPLES:
            self._stop()
            if not self._start(due):
                return None
            head = self._head_timestamp()
            lag = due - head if head is not None else None
        frame = self._take()
        if frame is None or lag is None:
            return frame

        self._least_lag = min(self._least_lag, lag)
        self._lag_ticks += 1
        if lag < 0 and level_dbfs(frame) < QUIET_DBFS:
            # Playing ahead of the measured jitter: this quiet frame plays again next
            # tick, and everything after it a frame later.
            self._pending = np.concatenate((frame, self._pending))
            self._pending_timestamp = head
            self.stats.repeated += 1
            self._forget_lag()
        elif self._lag_ticks >= SHRINK_TICKS:
            if self._least_lag < FRAME_SAMPLES:
                self._forget_lag()
            elif level_dbfs(frame) < QUIET_DBFS:
                # Dropped; the next quiet frame may go too while a frame is still spare.
                self.stats.shed += 1
                self._least_lag -= FRAME_SAMPLES
                frame = self._take()
        return frame

    # -- internals ---------------------------------------------------------------------

    def _restart_stream(self, ssrc: int, sequence: int, timestamp: int) -> None:
        self._ssrc = ssrc
        self._top_sequence, self._top_timestamp = sequence, timestamp
        # Room for the first packets to come out of order.
        self._next_sequence = sequence - MAX_PACKETS
        self._spread.clear()
        self.clear()

    def _on_tick(self, now: float) -> float:
        """When this tick was due: ticks are 20 ms apart however late each one runs."""
        tick = now if self._tick is None else min(now, self._tick + FRAME_SECONDS)
        if now - tick > MAX_TICK_LATENESS:
            tick = now
        self._least_lateness = min(self._least_lateness, now - tick)
        self._lateness_ticks += 1
        if self._lateness_ticks >= RESYNC_TICKS:
            tick += self._least_lateness
            self._least_lateness = math.inf
            self._lateness_ticks = 0
        self._tick = tick
        return tick

    def _due(self, now: float) -> float:
        """The newest RTP timestamp every packet up to which should have arrived by `now`."""
        spread = self._spread
        slowest = min(spread.high, spread.low + MAX_DELAY_SECONDS)
        return (now - slowest - MARGIN_SECONDS) * SAMPLE_RATE

    def _start(self, due: float) -> bool:
        packets = self._packets
        if not packets:
            return False
        first = min(packets)
        if packets[first].timestamp > due:
            return False
        newest = max(packets)
        stale = due - MAX_EXCESS_FRAMES * FRAME_SAMPLES
        for sequence in sorted(packets):
            if sequence == newest or packets[sequence].timestamp >= stale:
                break
            del packets[sequence]
        self._next_sequence = min(packets)
        self._decoder.reset()
        self._playing = True
        self.stats.starts += 1
        return True

    def _stop(self) -> None:
        self._playing = False
        self._pending = NO_SAMPLES
        self._pending_timestamp = None
        self._owed = 0
        self._forget_lag()

    def _forget_lag(self) -> None:
        self._least_lag = math.inf
        self._lag_ticks = 0

    def _head_timestamp(self) -> int | None:
        """The RTP timestamp of the next sample to play, when it comes from a packet."""
        if self._pending.size:
            return self._pending_timestamp
        packet = self._packets.get(self._next_sequence)
        return packet.timestamp if packet is not None else None

    def _take(self) -> Samples | None:
        """The next frame of audio, decoding or concealing packets as needed."""
        while self._pending.size < FRAME_SAMPLES:
            packet = self._packets.pop(self._next_sequence, None)
            if packet is not None:
                self._next_sequence += 1
                self._owed = 0
                self._append(self._decode(packet.payload), packet.timestamp)
                continue
            if self._packets:
                gap = min(self._packets) - self._next_sequence
                if gap > MAX_CONCEALED:
                    # The sender skipped ahead: start again from what it sends now.
                    self._stop()
                    return None
                # Lost, or later than the delay allows: its slot is concealed, unless
                # it already was while nothing had arrived.
                self._next_sequence += 1
                if self._owed:
                    self._owed -= 1
                    continue
            elif self._owed >= MAX_CONCEALED:
                self._stop()
                return None
            else:
                self._owed += 1
            self._append(self._conceal(), None)
        frame = self._pending[:FRAME_SAMPLES]
        self._pending = self._pending[FRAME_SAMPLES:]
        if self._pending_timestamp is not None:
            self._pending_timestamp += FRAME_SAMPLES
        return frame

    def _append(self, samples: Samples, timestamp: int | None) -> None:
        if not self._pending.size:
            self._pending_timestamp = timestamp
        self._pending = np.concatenate((self._pending, samples)) if self._pending.size else samples

    def _decode(self, payload: bytes) -> Samples:
        if payload:
            try:
                samples = self._decoder.decode(payload)
            except av.FFmpegError:
                samples = NO_SAMPLES
            if samples.size:
                self._last_payload = payload
                self.stats.played += 1
                return samples
        return self._conceal()

    def _conceal(self) -> Samples:
        self.stats.concealed += 1
        if self._last_payload:
            samples = self._decoder.decode(concealment_packet(self._last_payload))
            if samples.size:
                return samples
        return np.zeros(FRAME_SAMPLES, dtype=np.int16)
