"""Microphones that hum (a steady tone, or Opus-encoded tone bursts whose onsets can be
timed), and what a spectrum says of what was heard."""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Callable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

SAMPLE_RATE = 48000
FRAME = 960  # 20 ms
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
# Bursts: TONE_FRAMES of tone in every CYCLE_FRAMES (200 ms on, 300 ms off).
TONE_FRAMES = 10
CYCLE_FRAMES = 25


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
        frame.time_base = TIME_BASE
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


def opus_tone(
    hz: float,
    frames: int,
    bursts: bool = True,
    options: dict[str, str] | None = None,
    tone_frames: int = TONE_FRAMES,
    cycle_frames: int = CYCLE_FRAMES,
) -> list[bytes]:
    """`frames` 20 ms frames of a tone at 0.3 of full scale (in bursts of `tone_frames`
    every `cycle_frames`, or steady), encoded as mono 32 kbit/s Opus; `options` go to
    libopus (e.g. its frame duration)."""
    codec = av.CodecContext.create("libopus", "w")
    assert isinstance(codec, av.AudioCodecContext)
    codec.sample_rate = SAMPLE_RATE
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = 32000
    codec.time_base = TIME_BASE
    if options:
        codec.options = options
    payloads: list[bytes] = []
    for index in range(frames):
        t = (index * FRAME + np.arange(FRAME)) / SAMPLE_RATE
        loud = not bursts or index % cycle_frames < tone_frames
        wave = 0.3 * 32767 * np.sin(2 * np.pi * hz * t) if loud else np.zeros(FRAME)
        frame = av.AudioFrame.from_ndarray(
            wave.astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = TIME_BASE
        frame.pts = index * FRAME
        payloads.extend(bytes(p) for p in codec.encode(frame))
    return payloads


def burst_cycle(hz: float, cycles: int = 2, tone_frames: int = TONE_FRAMES,
                cycle_frames: int = CYCLE_FRAMES) -> list[bytes]:
    """One cycle of bursts, to send over and over: the last of `cycles` encoded (the
    first ones warm the encoder up)."""
    return opus_tone(hz, cycles * cycle_frames, tone_frames=tone_frames,
                     cycle_frames=cycle_frames)[-cycle_frames:]


class BurstTrack(MediaStreamTrack):
    """A microphone of tone bursts, Opus-encoded once up front so that aiortc only
    packetizes them: each burst's first packet leaves as `recv()` returns it, which is
    when its onset is noted (`onsets`). How late each packet left (the process being
    busy) is noted too (`lateness`): jitter the receiving end has to absorb. Onsets
    are on `clock` (the monotonic clock; wall time to compare with HLS's program
    dates)."""

    kind = "audio"

    def __init__(self, hz: float = 440, onsets: list[float] | None = None,
                 warmup_cycles: int = 2, tone_frames: int = TONE_FRAMES,
                 cycle_frames: int = CYCLE_FRAMES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._payloads = burst_cycle(hz, warmup_cycles, tone_frames, cycle_frames)
        self._clock = clock
        self.onsets: list[float] = onsets if onsets is not None else []
        self.lateness: list[tuple[float, float]] = []
        self._sent = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._sent * FRAME / SAMPLE_RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        now = time.monotonic()
        self.lateness.append((now, now - due))
        position = self._sent % len(self._payloads)
        packet = av.Packet(self._payloads[position])
        packet.pts = self._sent * FRAME
        packet.time_base = TIME_BASE
        self._sent += 1
        if position == 0:
            self.onsets.append(now if self._clock is time.monotonic else self._clock())
        return packet
