"""Audio arithmetic for a room: jitter buffering, voice activity and the Opus encoder.

Everything works on 20 ms mono frames at 48 kHz (960 int16 samples), the unit of the
room's clock.
"""

from __future__ import annotations

import fractions
import math
from collections import deque
from enum import Enum

import av
import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
BITRATE = 32000

Samples = npt.NDArray[np.int16]
Mix = npt.NDArray[np.int32]


def to_mono(frame: av.AudioFrame) -> Samples:
    """Decoded WebRTC audio (s16, usually stereo) as mono int16 at 48 kHz."""
    if frame.sample_rate != SAMPLE_RATE or frame.format.name != "s16":
        raise ValueError(f"unexpected audio {frame.format.name}@{frame.sample_rate}")
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if channels == 1:
        return data.reshape(-1).astype(np.int16, copy=False)
    # Packed s16 interleaves the channels in one row.
    mono = data.reshape(-1, channels).mean(axis=1)
    return mono.astype(np.int16)


def level_dbfs(samples: Samples) -> float:
    if samples.size == 0:
        return -math.inf
    power = float(np.mean(np.square(samples, dtype=np.float64)))
    if power <= 0.0:
        return -math.inf
    return 10.0 * math.log10(power / (32768.0 * 32768.0))


class JitterBuffer:
    """The samples a speaker has sent and the mixer has not yet taken.

    Packets arrive in bursts; the mixer takes one frame per tick on its own clock. The
    buffer fills to `prefill` before it plays (and again after running dry) so a burst
    gap does not cut every word, and sheds its oldest audio past `limit` so the delay
    of a speaker whose clock runs fast stays bounded.
    """

    def __init__(self, prefill: int = 2 * FRAME_SAMPLES, limit: int = 10 * FRAME_SAMPLES):
        self._chunks: deque[Samples] = deque()
        self._size = 0
        self._prefill = prefill
        self._limit = limit
        self._playing = False

    @property
    def buffered(self) -> int:
        return self._size

    def push(self, samples: Samples) -> None:
        if samples.size == 0:
            return
        self._chunks.append(samples)
        self._size += samples.size
        if self._size > self._limit:
            self._discard(self._size - self._prefill)

    def clear(self) -> None:
        self._chunks.clear()
        self._size = 0
        self._playing = False

    def pop_frame(self) -> Samples | None:
        """One frame of audio, or None while (re)filling or when nothing was sent."""
        if not self._playing:
            if self._size < self._prefill:
                return None
            self._playing = True
        if self._size == 0:
            self._playing = False
            return None
        out = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        filled = 0
        while filled < FRAME_SAMPLES and self._chunks:
            chunk = self._chunks[0]
            take = min(FRAME_SAMPLES - filled, chunk.size)
            out[filled : filled + take] = chunk[:take]
            filled += take
            if take == chunk.size:
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[take:]
        self._size -= filled
        if filled < FRAME_SAMPLES:
            # Ran dry mid-frame: play what there is, then refill before playing again.
            self._playing = False
        return out

    def _discard(self, count: int) -> None:
        while count > 0 and self._chunks:
            chunk = self._chunks[0]
            if chunk.size <= count:
                self._chunks.popleft()
                self._size -= chunk.size
                count -= chunk.size
            else:
                self._chunks[0] = chunk[count:]
                self._size -= count
                count = 0


class Speech(Enum):
    STARTED = "started"
    STOPPED = "stopped"


class VoiceActivity:
    """Speaking / not speaking from frame levels, with hysteresis.

    Two thresholds and two hold times: a voice must rise above `start_dbfs` for
    `start_frames` to count as speaking (a cough or a click does not), and stay below
    `stop_dbfs` for `stop_frames` to count as stopped (pauses between words do not).
    """

    def __init__(
        self,
        start_dbfs: float = -40.0,
        stop_dbfs: float = -50.0,
        start_frames: int = 3,
        stop_frames: int = 40,
    ) -> None:
        self._start_dbfs = start_dbfs
        self._stop_dbfs = stop_dbfs
        self._start_frames = start_frames
        self._stop_frames = stop_frames
        self._run = 0
        self.speaking = False

    def update(self, dbfs: float) -> Speech | None:
        if self.speaking:
            self._run = self._run + 1 if dbfs < self._stop_dbfs else 0
            if self._run >= self._stop_frames:
                return self.reset()
        else:
            self._run = self._run + 1 if dbfs > self._start_dbfs else 0
            if self._run >= self._start_frames:
                self.speaking = True
                self._run = 0
                return Speech.STARTED
        return None

    def reset(self) -> Speech | None:
        """Forget the current state (muted, demoted); tells whether speech just stopped."""
        was_speaking = self.speaking
        self.speaking = False
        self._run = 0
        return Speech.STOPPED if was_speaking else None


def mix_frame(mix: Mix, pts: int) -> av.AudioFrame:
    """A mix as a decoded audio frame (mono s16, 48 kHz) stamped with the room clock."""
    samples = np.clip(mix, -32768, 32767).astype(np.int16).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    frame.time_base = TIME_BASE
    frame.pts = pts
    return frame


class OpusEncoder:
    """libopus tuned for speech: mono, 32 kbit/s, the VoIP application mode.

    Each packet carries the room clock's pts, so every receiver of it gets continuous
    RTP timestamps whatever encoder made it.
    """

    def __init__(self) -> None:
        codec = av.CodecContext.create("libopus", "w")
        assert isinstance(codec, av.AudioCodecContext)
        codec.sample_rate = SAMPLE_RATE
        codec.layout = "mono"
        codec.format = "s16"
        codec.bit_rate = BITRATE
        codec.time_base = TIME_BASE
        codec.options = {"application": "voip"}
        self._codec = codec

    def encode(self, mix: Mix, pts: int) -> list[av.Packet]:
        packets = list(self._codec.encode(mix_frame(mix, pts)))
        for packet in packets:
            packet.pts = pts
            packet.time_base = TIME_BASE
        return packets
