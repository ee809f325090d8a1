"""The benchmark's speaker signal, Opus-encoded: a tone in bursts (200 ms on, 300 ms
off), so that each burst's first loud packet marks an onset to time. The media tests
send the same signal."""

from __future__ import annotations

import fractions

import av
import numpy as np

SAMPLE_RATE = 48000
FRAME = 960  # 20 ms of samples
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
TONE_FRAMES = 10
CYCLE_FRAMES = 25


def opus_tone(
    hz: float,
    frames: int,
    bursts: bool = True,
    options: dict[str, str] | None = None,
) -> list[bytes]:
    """`frames` 20 ms frames of a tone at 0.3 of full scale (in bursts, or steady),
    encoded as mono 32 kbit/s Opus; `options` go to libopus (e.g. its frame duration)."""
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
        loud = not bursts or index % CYCLE_FRAMES < TONE_FRAMES
        wave = 0.3 * 32767 * np.sin(2 * np.pi * hz * t) if loud else np.zeros(FRAME)
        frame = av.AudioFrame.from_ndarray(
            wave.astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = TIME_BASE
        frame.pts = index * FRAME
        payloads.extend(bytes(p) for p in codec.encode(frame))
    return payloads


def burst_cycle(hz: float, cycles: int = 2) -> list[bytes]:
    """One cycle of bursts, to send over and over: the last of `cycles` encoded (the
    first ones warm the encoder up)."""
    return opus_tone(hz, cycles * CYCLE_FRAMES)[-CYCLE_FRAMES:]
