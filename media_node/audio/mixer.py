"""Audio arithmetic for a room: levels, voice activity, the mix and its Opus encoder.

Everything works on 20 ms mono frames at 48 kHz (960 int16 samples), the unit of the
room's clock.
"""

from __future__ import annotations

import fractions
import math
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


def level_dbfs(samples: Samples) -> float:
    if samples.size == 0:
        return -math.inf
    power = float(np.mean(np.square(samples, dtype=np.float64)))
    if power <= 0.0:
        return -math.inf
    return 10.0 * math.log10(power / (32768.0 * 32768.0))


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
