"""HLS settings of a media node, from its environment (without HLS_BUCKET: no HLS)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .config import ConfigError

# The S3 layout (docs/media-contract.md, section 9): everything of a Space under
# <prefix>/<space id>/.
LIVE_PLAYLIST = "live.m3u8"
SEGMENT_TYPE = "video/mp2t"
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
# What CloudFront (and the local web origin) pass on to players: a playlist is
# rewritten every segment, a segment's key is never written twice.
PLAYLIST_CACHE = "public, max-age=1"
SEGMENT_CACHE = "public, max-age=31536000, immutable"
# Every object says whether its Space is recorded: the bucket's lifecycle rules keep a
# recording's objects for the retention period, the others a day at most.
RECORDED_TAG = "recorded"


@dataclass(frozen=True)
class HlsSettings:
    bucket: str
    prefix: str = "hls"
    # AAC-LC, mono, 48 kHz: enough for speech, every HLS player's codec.
    bitrate: int = 48000
    # About 1 s: a segment's length is most of what HLS adds to the delay before a
    # listener can have it; shorter ones cost more requests per listener-hour.
    segment_seconds: float = 1.0
    # Segments the live playlist lists: players start about three from its end.
    live_segments: int = 6
    upload_threads: int = 4
    # How long a closing room's uploads keep trying before they are given up.
    close_timeout_seconds: float = 30.0
    # Segments a room keeps while S3 refuses them (600: ten minutes, about 5 MB); past
    # it the oldest waiting go, so an outage of hours cannot exhaust the node's memory.
    max_queued_segments: int = 600

    def space_prefix(self, space_id: str) -> str:
        return f"{self.prefix}/{space_id}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HlsSettings | None:
        env = os.environ if env is None else env
        bucket = env.get("HLS_BUCKET", "").strip()
        if not bucket:
            return None
        prefix = env.get("HLS_PREFIX", "hls").strip("/")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*", prefix):
            raise ConfigError(f"HLS_PREFIX must be a path of letters, digits and _.-: {prefix!r}")
        bitrate = _number(env, "HLS_BITRATE", 48000)
        seconds = _number(env, "HLS_SEGMENT_SECONDS", 1.0)
        if not 0.5 <= seconds <= 6:
            raise ConfigError(f"HLS_SEGMENT_SECONDS must be 0.5 to 6, got {seconds:g}")
        if not 16000 <= bitrate <= 256000:
            raise ConfigError(f"HLS_BITRATE must be 16000 to 256000, got {bitrate:g}")
        live_segments = int(_number(env, "HLS_LIVE_SEGMENTS", 6))
        if live_segments < 3:
            raise ConfigError(f"HLS_LIVE_SEGMENTS must be at least 3, got {live_segments}")
        return cls(bucket=bucket, prefix=prefix, bitrate=int(bitrate), segment_seconds=seconds,
                   live_segments=live_segments,
                   upload_threads=max(1, int(_number(env, "HLS_UPLOAD_THREADS", 4))),
                   close_timeout_seconds=_number(env, "HLS_CLOSE_TIMEOUT_SECONDS", 30.0),
                   max_queued_segments=max(2, int(_number(env, "HLS_MAX_QUEUED_SEGMENTS",
                                                          600))))


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
