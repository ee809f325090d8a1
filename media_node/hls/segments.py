"""The room's mix encoded once more, for HLS: AAC-LC by FFmpeg's encoder, cut into
MPEG-TS segments by FFmpeg's muxer (both through PyAV).

AAC-LC in MPEG-TS is what every HLS player takes: Safari natively, hls.js (Chromium,
Firefox) by remuxing it. Each segment is a whole TS file (its own PAT and PMT), so a
player may start at any of them; the timestamps run on across the segments of one run
(one encoder), so consecutive segments play without a seam."""

from __future__ import annotations

import fractions
import io
from dataclasses import dataclass

import av
import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 48000
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
# AAC-LC codes 1024 samples a frame, whatever the rate.
AAC_FRAME = 1024
# FFmpeg's TS muxer gathers an audio stream's frames into one PES packet, for up to
# half of `max_delay` (microseconds) and `pes_payload_size` bytes, instead of one PES
# per 21 ms frame: at speech bitrates a frame barely exceeds a TS packet, and a PES each
# nearly doubles a segment. With these a 48 kbit/s segment is about 31% overhead (PAT,
# PMT, ADTS and PES headers, TS packets' padding) against 47% at 0.5 s and 2930 bytes.
TS_OPTIONS = {"max_delay": "1000000", "pes_payload_size": "4000"}


@dataclass(frozen=True)
class Segment:
    """One TS file. `first_pts` is on the run's clock: 48 kHz samples of the mix, the
    mix's first sample at 0 (the encoder's priming frame starts just before it)."""

    index: int
    first_pts: int
    samples: int
    data: bytes

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLE_RATE


class Segmenter:
    """Mix frames in, finished segments out. Cheap enough to run on the mixer's tick
    (about 1% of a core per room, docs/hls.md); it never waits on anything."""

    def __init__(self, bitrate: int, segment_seconds: float) -> None:
        # The encoder is a stream of a container that never writes a segment: the
        # segments' streams copy its parameters (AudioSpecificConfig included, which
        # the TS muxer needs to write ADTS headers) from it.
        self._template = av.open(io.BytesIO(), "w", format="mpegts")
        stream = self._template.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        codec = stream.codec_context
        codec.bit_rate = bitrate
        codec.format = "fltp"
        codec.time_base = TIME_BASE
        self._template.start_encoding()
        self._stream = stream
        self._encoder = codec
        self.frames_per_segment = max(1, round(segment_seconds * SAMPLE_RATE / AAC_FRAME))
        self._pending: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)
        self._packets: list[av.Packet] = []
        self._next_pts = 0
        self._index = 0
        self.finished = False

    @property
    def segment_seconds(self) -> float:
        return self.frames_per_segment * AAC_FRAME / SAMPLE_RATE

    def push(self, mix: npt.NDArray[np.int32]) -> list[Segment]:
        """A frame of the mix (any length, int32 sums of 16-bit voices)."""
        samples = np.clip(mix, -32768, 32767).astype(np.float32) / 32768.0
        self._pending = np.concatenate((self._pending, samples))
        done: list[Segment] = []
        while self._pending.size >= AAC_FRAME:
            frame, self._pending = self._pending[:AAC_FRAME], self._pending[AAC_FRAME:]
            self._encode(frame)
            if len(self._packets) >= self.frames_per_segment:
                done.append(self._cut(self.frames_per_segment))
        return done

    def finish(self) -> list[Segment]:
        """What is left: the partial frame (padded with silence), the encoder's delayed
        frames, cut into the last segment (or two, when they overflow one)."""
        if self.finished:
            return []
        self.finished = True
        if self._pending.size:
            padded = np.zeros(AAC_FRAME, dtype=np.float32)
            padded[: self._pending.size] = self._pending
            self._pending = padded[:0]
            self._encode(padded)
        self._packets.extend(self._drain(None))
        done = []
        while self._packets:
            done.append(self._cut(min(len(self._packets), self.frames_per_segment)))
        self._template.close()
        return done

    def _encode(self, samples: npt.NDArray[np.float32]) -> None:
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="fltp", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = TIME_BASE
        frame.pts = self._next_pts
        self._next_pts += samples.size
        self._packets.extend(self._drain(frame))

    def _drain(self, frame: av.AudioFrame | None) -> list[av.Packet]:
        packets = list(self._encoder.encode(frame))
        for packet in packets:
            packet.time_base = TIME_BASE
        return packets

    def _cut(self, count: int) -> Segment:
        packets, self._packets = self._packets[:count], self._packets[count:]
        # Read before muxing, which rescales each packet to the TS clock (90 kHz).
        first_pts = int(packets[0].pts) if packets[0].pts is not None else 0
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="mpegts", container_options=TS_OPTIONS) as out:
            stream = out.add_stream_from_template(self._stream)
            for packet in packets:
                packet.stream = stream
                out.mux(packet)
        segment = Segment(self._index, first_pts, count * AAC_FRAME, buffer.getvalue())
        self._index += 1
        return segment
