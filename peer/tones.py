"""A microphone that hums, and what a spectrum says of what was heard."""

from __future__ import annotations

import asyncio
import fractions
import time

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

SAMPLE_RATE = 48000
FRAME = 960  # 20 ms


class ToneTrack(MediaStreamTrack):
    """A microphone that hums one frequency, paced in real time."""

    kind = "audio"

    def __init__(self, hz: float, amplitude: float = 0.25) -> None:
        super().__init__()
        self._hz = hz
        self._amplitude = amplitude
        self._sent = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._sent / SAMPLE_RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        t = (self._sent + np.arange(FRAME)) / SAMPLE_RATE
        wave = self._amplitude * 32767 * np.sin(2 * np.pi * self._hz * t)
        frame = AudioFrame.from_ndarray(
            wave.astype(np.int16).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._sent += FRAME
        return frame


def tone_level(samples: np.ndarray, hz: float) -> float:
    """Amplitude (as a fraction of full scale) of the `hz` component of `samples`."""
    if samples.size == 0:
        return 0.0
    window = np.hanning(samples.size)
    t = np.arange(samples.size) / SAMPLE_RATE
    component = np.sum(samples * window * np.exp(-2j * np.pi * hz * t))
    return float(2 * abs(component) / np.sum(window) / 32768)


def peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / SAMPLE_RATE)[int(np.argmax(spectrum))])


def describe(samples: np.ndarray) -> str:
    """One line on what `samples` (16-bit PCM) sound like: level and loudest frequency."""
    if samples.size < FRAME:
        return "silence (nothing received)"
    rms = float(np.sqrt(np.mean(np.square(samples))) / 32768)
    return f"level {rms:.3f}, loudest at {peak_hz(samples):.0f} Hz" if rms > 0.001 \
        else "silence"
