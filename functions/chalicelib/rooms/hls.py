"""A Space's HLS as the control plane sees it: where players find it, and what becomes
of it when the Space ends.

While a Space is live its owner node writes AAC segments and a live playlist under
`<prefix>/<space id>/` in the HLS bucket (docs/media-contract.md, section 9); CloudFront
serves them at `/hls/*`. When it has ended, its HLS is *settled*, once:

- recorded: the replay playlist (`index.m3u8`, VOD, closed) is written from the
  segments in the bucket, every run of the Space in order (a run per room the nodes
  opened; a worker that died leaves its run as far as it was written), the live
  playlist is closed if its node could not close it, and the Space records the replay:
  its length and when it expires (the bucket's lifecycle rule deletes its objects then);
- not recorded: its objects are deleted.

The node that held the room says when its last segment is written (`hls_finished`, a
media event): that settles the Space at once. A Space whose node died says nothing:
the sweep (`settle_due`, every minute) settles what ended HLS_SETTLE_SECONDS ago and is
still pending. Settling again is harmless: it reads the bucket afresh."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3
from pynamodb.exceptions import UpdateError

from ..platform import pagination
from ..platform.config import settings
from ..platform.errors import Conflict, Forbidden, NotFound, Unavailable
from ..platform.models import HLS_PENDING, Space
from . import spaces

log = logging.getLogger(__name__)

LIVE_PLAYLIST = "live.m3u8"
REPLAY_PLAYLIST = "index.m3u8"
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
# CloudFront's playlist policy caches a second; the origin says the same.
PLAYLIST_CACHE = "public, max-age=1"
SAMPLE_RATE = 48000
READY, DELETED = "ready", "deleted"
LIVE, REPLAY, NONE = "live", "replay", "none"
# <run>/<index>-<samples>.ts: the run (epoch ms of its first sample), the segment's
# number in the run, its length in 48 kHz samples.
_SEGMENT = re.compile(r"(\d+)/(\d{6})-(\d+)\.ts")
_REPLAY_KEYS = {"space_id": "S", "replay_host_id": "S", "ended_at": "N"}
# Every object is tagged by whoever writes it (the nodes, settle below): whether its
# Space is recorded. The bucket's lifecycle rules go by the tag.
RECORDED_TAG = "recorded"
UNRECORDED_DAYS = 1


def lifecycle_rules(prefix: str, replay_days: int) -> list[dict[str, Any]]:
    """The HLS bucket's lifecycle rules, in S3's API terms: a recording's objects are
    kept `replay_days`, the others a day at most (settle deletes them when their Space
    ends; this catches any it missed). cdk/hls.py and the local runtime both use them."""
    def tagged(value: str) -> dict[str, Any]:
        return {"And": {"Prefix": f"{prefix}/",
                        "Tags": [{"Key": RECORDED_TAG, "Value": value}]}}
    return [
        {"ID": "replays", "Status": "Enabled", "Filter": tagged("true"),
         "Expiration": {"Days": replay_days}},
        {"ID": "unrecorded", "Status": "Enabled", "Filter": tagged("false"),
         "Expiration": {"Days": UNRECORDED_DAYS}},
        {"ID": "uploads", "Status": "Enabled", "Filter": {"Prefix": f"{prefix}/"},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
    ]


@cache
def _s3() -> Any:
    return boto3.client("s3")


def enabled() -> bool:
    return settings().hls_bucket is not None


def _bucket() -> str:
    bucket = settings().hls_bucket
    if bucket is None:
        raise Unavailable("This deployment has no HLS", code="hls_unavailable")
    return bucket


def _prefix(space_id: str) -> str:
    return f"{settings().hls_prefix}/{space_id}/"


def url(space_id: str, name: str) -> str:
    return f"{settings().hls_base_url}/{space_id}/{name}"


def _has_replay(space: Space, now: float) -> bool:
    return space.replay_state == READY and float(space.replay_expires_at or 0) > now


def detail(space: Space, viewer_id: str) -> dict[str, Any]:
    """The Space as `GET /spaces/{id}` shows it: spaces.detail, and how to play it."""
    return {**spaces.detail(space, viewer_id), "playback": playback(space)}


def playback(space: Space, now: float | None = None) -> dict[str, Any]:
    """How the Space can be listened to over HLS now."""
    now = time.time() if now is None else now
    recording = bool(space.record)
    if enabled() and space.state == spaces.LIVE:
        return {"state": LIVE, "hls_url": url(space.space_id, LIVE_PLAYLIST),
                "recording": recording, "duration_seconds": None}
    if enabled() and _has_replay(space, now):
        return {"state": REPLAY, "hls_url": url(space.space_id, REPLAY_PLAYLIST),
                "recording": True, "duration_seconds": float(space.replay_seconds or 0)}
    return {"state": NONE, "hls_url": None, "recording": recording, "duration_seconds": None}


# -- the bucket ---------------------------------------------------------------------


def _keys(space_id: str) -> list[str]:
    pages = _s3().get_paginator("list_objects_v2").paginate(
        Bucket=_bucket(), Prefix=_prefix(space_id))
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _delete(keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):
        _s3().delete_objects(Bucket=_bucket(), Delete={
            "Objects": [{"Key": key} for key in keys[start:start + 1000]], "Quiet": True})


def _segments(keys: list[str], space_id: str) -> list[tuple[int, int, int, str]]:
    """(run, index, samples, name relative to the Space's folder), in playing order."""
    found = []
    prefix = _prefix(space_id)
    for key in keys:
        name = key.removeprefix(prefix)
        match = _SEGMENT.fullmatch(name)
        if match:
            run, index, samples = (int(g) for g in match.groups())
            found.append((run, index, samples, name))
    return sorted(found)


def _iso(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def replay_playlist(segments: list[tuple[int, int, int, str]]) -> str:
    """A closed (VOD) playlist of every segment; a discontinuity wherever a run starts
    or a segment of a run is missing, each such point dated."""
    target = max(1, *(round(samples / SAMPLE_RATE) for _, _, samples, _ in segments))
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{target}",
             "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD",
             "#EXT-X-INDEPENDENT-SEGMENTS"]
    previous: tuple[int, int] | None = None
    standard: dict[int, int] = {}
    for run, index, samples, name in segments:
        # Every segment of a run but its last has the run's standard length.
        standard.setdefault(run, samples)
        if previous != (run, index - 1):
            if previous is not None:
                lines.append("#EXT-X-DISCONTINUITY")
            began = run / 1000 + index * standard[run] / SAMPLE_RATE
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_iso(began)}")
        lines.append(f"#EXTINF:{samples / SAMPLE_RATE:.6f},")
        lines.append(name)
        previous = (run, index)
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


# -- settling ---------------------------------------------------------------------------


def settle(space_id: str) -> str:
    """Settles an ended Space's HLS; says what it did (`live`: nothing yet)."""
    if not enabled():
        return NONE
    space = spaces.load(space_id)
    if space.state == spaces.LIVE:
        return LIVE
    keys = _keys(space_id)
    if not space.record or space.replay_state == DELETED:
        _delete(keys)
        Space(space_id).update(actions=[Space.hls_pending.remove()])
        return DELETED
    segments = _segments(keys, space_id)
    if not segments:
        Space(space_id).update(actions=[Space.hls_pending.remove()])
        return NONE
    _close_live_playlist(space_id)
    _s3().put_object(Bucket=_bucket(), Key=_prefix(space_id) + REPLAY_PLAYLIST,
                     Body=replay_playlist(segments).encode(), ContentType=PLAYLIST_TYPE,
                     CacheControl=PLAYLIST_CACHE, Tagging=f"{RECORDED_TAG}=true")
    seconds = sum(samples for _, _, samples, _ in segments) / SAMPLE_RATE
    ended_at = float(space.ended_at or time.time())
    try:
        Space(space_id).update(
            actions=[Space.replay_state.set(READY), Space.replay_seconds.set(round(seconds, 3)),
                     Space.replay_expires_at.set(
                         int(ended_at + settings().replay_retention_days * 86400)),
                     Space.replay_host_id.set(space.host_id), Space.hls_pending.remove()],
            condition=Space.replay_state.does_not_exist() | (Space.replay_state == READY))
    except UpdateError:
        # The host deleted the replay meanwhile: what was just written goes too.
        _delete(_keys(space_id))
        return DELETED
    log.info("space %s: replay of %.1f s from %d segments", space_id, seconds, len(segments))
    return REPLAY


def _close_live_playlist(space_id: str) -> None:
    """Ends the live playlist where its node could not (the room closed before the
    Space's end reached it): players still following it stop at its last segment."""
    key = _prefix(space_id) + LIVE_PLAYLIST
    try:
        text = _s3().get_object(Bucket=_bucket(), Key=key)["Body"].read().decode()
    except _s3().exceptions.NoSuchKey:
        return
    if "#EXT-X-ENDLIST" in text:
        return
    _s3().put_object(Bucket=_bucket(), Key=key, Body=(text + "#EXT-X-ENDLIST\n").encode(),
                     ContentType=PLAYLIST_TYPE, CacheControl=PLAYLIST_CACHE,
                     Tagging=f"{RECORDED_TAG}=true")


def on_finished(event: Mapping[str, Any]) -> None:
    """A node's `hls_finished`: the room's last segment is written."""
    space_id = event.get("space_id")
    if not isinstance(space_id, str):
        raise ValueError("hls_finished needs space_id")
    try:
        settle(space_id)
    except NotFound:
        log.warning("hls_finished for an unknown Space %s", space_id)


def settle_due(now: float | None = None) -> list[str]:
    """Settles ended Spaces still pending HLS_SETTLE_SECONDS after their end (their node
    died before it finished, or its event was lost)."""
    if not enabled():
        return []
    now = time.time() if now is None else now
    due = Space.hls_settling.query(
        HLS_PENDING, Space.ended_at <= now - settings().hls_settle_seconds)
    settled = []
    for space in due:
        try:
            settle(space.space_id)
        except NotFound:
            continue
        settled.append(space.space_id)
    return settled


# -- the host's replays -------------------------------------------------------------------


def delete_recording(caller_id: str, space_id: str) -> dict[str, Any]:
    space = spaces.load(space_id)
    if space.host_id != caller_id:
        raise Forbidden("Only the host deletes a Space's recording", code="not_host")
    if space.state == spaces.LIVE:
        raise Conflict("The Space is live: its recording becomes a replay when it ends",
                       code="space_live", state=space.state)
    if not space.record or space.replay_state == DELETED or \
            (space.replay_state == READY and not _has_replay(space, time.time())):
        raise NotFound("This Space has no recording", code="recording_not_found")
    Space(space_id).update(actions=[
        Space.replay_state.set(DELETED), Space.replay_host_id.remove(),
        Space.replay_seconds.remove(), Space.hls_pending.remove()])
    if enabled():
        _delete(_keys(space_id))
    return {"space_id": space_id, "deleted": True}


def replay_view(space: Space, people: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "space_id": space.space_id,
        "title": space.title,
        "topics": list(space.topics or []),
        "host": spaces._person(space.host_id, people),
        "started_at": space.started_at,
        "ended_at": space.ended_at,
        "duration_seconds": float(space.replay_seconds or 0),
        "hls_url": url(space.space_id, REPLAY_PLAYLIST),
        "expires_at": int(space.replay_expires_at or 0),
    }


def list_replays(user_id: str, query: Mapping[str, str] | None) -> dict[str, Any]:
    from ..social import follows

    follows.get_user(user_id)
    cursor = pagination.decode(query, _REPLAY_KEYS, {"replay_host_id": user_id})
    result = Space.replays.query(user_id, scan_index_forward=False,
                                 limit=pagination.limit(query), last_evaluated_key=cursor)
    now = time.time()
    found = [s for s in result if _has_replay(s, now)]
    people = spaces._people([user_id])
    return pagination.page([replay_view(s, people) for s in found], result.last_evaluated_key)
