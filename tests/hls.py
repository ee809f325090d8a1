"""An HLS reader for tests and benchmarks: playlists parsed on their own terms (not with
the node's code), segments decoded with PyAV."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from datetime import datetime

import av
import numpy as np

SAMPLE_RATE = 48000
_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


@dataclass
class Segment:
    uri: str
    seconds: float
    program_date: float | None
    discontinuity: bool


@dataclass
class Playlist:
    media_sequence: int = 0
    discontinuity_sequence: int = 0
    target_duration: int = 0
    ended: bool = False
    playlist_type: str | None = None
    segments: list[Segment] = field(default_factory=list)
    # Each EXT-X-DATERANGE's attributes, quotes removed.
    date_ranges: list[dict[str, str]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.segments)


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def parse_playlist(text: str) -> Playlist:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines, "an empty playlist"
    assert lines[0] == "#EXTM3U", text[:200]
    playlist = Playlist()
    seconds: float | None = None
    program_date: float | None = None
    discontinuity = False
    for line in lines[1:]:
        if not line.startswith("#"):
            assert seconds is not None, f"{line} has no EXTINF"
            playlist.segments.append(Segment(line, seconds, program_date, discontinuity))
            seconds, discontinuity = None, False
            if program_date is not None:
                program_date = None
            continue
        name, _, value = line[1:].partition(":")
        if name == "EXTINF":
            seconds = float(value.split(",")[0])
        elif name == "EXT-X-MEDIA-SEQUENCE":
            playlist.media_sequence = int(value)
        elif name == "EXT-X-DISCONTINUITY-SEQUENCE":
            playlist.discontinuity_sequence = int(value)
        elif name == "EXT-X-TARGETDURATION":
            playlist.target_duration = int(value)
        elif name == "EXT-X-PLAYLIST-TYPE":
            playlist.playlist_type = value
        elif name == "EXT-X-DISCONTINUITY":
            discontinuity = True
        elif name == "EXT-X-PROGRAM-DATE-TIME":
            program_date = _epoch(value)
        elif name == "EXT-X-ENDLIST":
            playlist.ended = True
        elif name == "EXT-X-DATERANGE":
            playlist.date_ranges.append(
                {k: v.strip('"') for k, v in _ATTRIBUTE.findall(value)})
    return playlist


def decode(segment: bytes) -> np.ndarray:
    """A TS segment's audio as mono float samples (-1..1) at 48 kHz."""
    with av.open(io.BytesIO(segment), "r", format="mpegts") as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "aac", stream.codec_context.name
        assert stream.codec_context.sample_rate == SAMPLE_RATE
        frames = [frame.to_ndarray()[0] for frame in container.decode(stream)]
    return np.concatenate(frames) if frames else np.zeros(0)


def tone_level(samples: np.ndarray, hz: float) -> float:
    """Amplitude of the `hz` component of float samples, as a fraction of full scale."""
    if samples.size == 0:
        return 0.0
    window = np.hanning(samples.size)
    t = np.arange(samples.size) / SAMPLE_RATE
    return float(2 * abs(np.sum(samples * window * np.exp(-2j * np.pi * hz * t)))
                 / np.sum(window))


def peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / SAMPLE_RATE)[int(np.argmax(spectrum))])
