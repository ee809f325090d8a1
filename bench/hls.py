"""`make bench`: HLS (docs/hls.md). Results in bench/results/hls.json.

1. What HLS costs a node, per room, in one run: two media nodes side by side on the
   same core, one packaging HLS into the embedded S3 and one not, each with ROOMS
   rooms of one speaker (pre-encoded tone bursts, as the media benchmark's). The
   worker's CPU over the same windows gives the difference per room (goal: under 5% of
   a core) and the ratio.
2. Latency, under `make up` (real processes): a host's tone bursts, each onset's wall
   time noted as it is sent; the live playlist polled through the local origin every
   50 ms. *Mix to origin*: from a segment's last sample mixed (its
   PROGRAM-DATE-TIME plus its length) to the moment the origin lists it.
   *Glass to glass*: a client that behaves as hls.js does by default, reading the
   playlist through a one-second cache (CloudFront's playlist TTL), reloading it every
   target duration and starting three target durations behind the live edge (hls.js's
   liveSyncDurationCount; two is shown too), then playing in real time: from a burst's
   onset sent by the host to the moment that client plays it. Goal: p95 <= 6 s."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import boto3
import jwt
import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.media.harness import RESULTS, Aws, MediaNode, process_cpu, write_results
from peer.session import MediaSession
from peer.tones import BurstTrack
from tests.hls import decode, parse_playlist
from tests.localrun import LocalRun

BUCKET = "parlor-hls-bench"
SAMPLE_RATE = 48000
# A burst of 440 Hz, 200 ms, every 2 s: far apart enough that no two share a segment's
# onset search, near enough for 30 onsets a minute.
BURST_EVERY_FRAMES = 100
BURST_FRAMES = 10
GOAL_P95_SECONDS = 6.0
GOAL_CPU_PERCENT_PER_ROOM = 5.0


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, Any]:
    return {"count": len(values), "p50": _round(percentile(values, 0.5)),
            "p95": _round(percentile(values, 0.95)), "max": _round(max(values, default=None))}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# -- 1. the node's CPU, HLS on against off ---------------------------------------------------


def _token(key: Ed25519PrivateKey, node_id: str, user: str, space: str, role: str) -> str:
    now = time.time()
    return jwt.encode({"iss": "parlor-control-plane", "aud": "parlor-media", "sub": user,
                       "space": space, "role": role, "node": node_id, "muted": False,
                       "iat": int(now), "exp": int(now + 60), "jti": uuid.uuid4().hex},
                      key, algorithm="EdDSA")


async def _rooms(node: MediaNode, key: Ed25519PrivateKey, rooms: int) -> list[MediaSession]:
    speakers = []
    for index in range(rooms):
        space = f"sp_bench_{node.node_id[-6:]}_{index}"
        speaker = MediaSession(microphone=BurstTrack(
            440, tone_frames=BURST_FRAMES, cycle_frames=BURST_EVERY_FRAMES, clock=time.time))
        await speaker.open(f"{node.url}/media/spaces/{space}/sessions",
                           _token(key, node.node_id, f"u_speaker{index}", space, "host"))
        speakers.append(speaker)
    return speakers


def node_cpu(rooms: int, windows: int, window_seconds: float, log_dir: Path) -> dict[str, Any]:
    aws = Aws()
    boto3.client("s3", endpoint_url=aws.endpoint, region_name="us-east-1",
                 aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)  # noqa: S106
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    # The harness's node takes os.environ: HLS_BUCKET for the one that packages.
    os.environ["HLS_BUCKET"] = BUCKET
    hls_on = MediaNode(aws, public, "fast", log_dir)
    del os.environ["HLS_BUCKET"]
    hls_off = MediaNode(aws, public, "fast", log_dir)
    nodes = {"on": hls_on, "off": hls_off}

    async def measure() -> dict[str, list[float]]:
        peers = [p for node in nodes.values() for p in await _rooms(node, key, rooms)]
        try:
            await asyncio.sleep(10)  # warm-up: joins done, encoders and uploads going
            spent: dict[str, list[float]] = {"on": [], "off": []}
            for _ in range(windows):
                before = {k: process_cpu(n.worker_pid) for k, n in nodes.items()}
                await asyncio.sleep(window_seconds)
                for k, n in nodes.items():
                    spent[k].append((process_cpu(n.worker_pid) - before[k]) / window_seconds)
            return spent
        finally:
            await asyncio.gather(*(p.close() for p in peers))

    try:
        spent = asyncio.run(measure())
    finally:
        for node in nodes.values():
            node.stop()
        aws.stop()
    on, off = statistics.median(spent["on"]), statistics.median(spent["off"])
    per_room = (on - off) / rooms * 100
    return {
        "rooms_per_node": rooms,
        "windows": windows,
        "window_seconds": window_seconds,
        "worker_cpu_percent_hls_on": round(on * 100, 2),
        "worker_cpu_percent_hls_off": round(off * 100, 2),
        "hls_cpu_percent_of_a_core_per_room": round(per_room, 2),
        "ratio_on_over_off": round(on / off, 3) if off else None,
        "rounds_on": [round(v * 100, 2) for v in spent["on"]],
        "rounds_off": [round(v * 100, 2) for v in spent["off"]],
        "goal_percent_per_room": GOAL_CPU_PERCENT_PER_ROOM,
        "met": per_room < GOAL_CPU_PERCENT_PER_ROOM,
    }


# -- 2. latency under make up -------------------------------------------------------------------


def _fetch(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
            return bytes(response.read())
    except urllib.error.HTTPError:
        return None


class Watcher:
    """Polls the live playlist at the origin every 50 ms: when each segment appeared."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.base = url.rsplit("/", 1)[0]
        self.appeared: dict[str, float] = {}
        self.segments: dict[str, tuple[float, float]] = {}  # uri -> (date, seconds)

    async def run(self, until: float) -> None:
        while time.time() < until:
            body = await asyncio.to_thread(_fetch, self.url)
            now = time.time()
            if body:
                for segment in parse_playlist(body.decode()).segments:
                    if segment.uri not in self.appeared and segment.program_date is not None:
                        self.appeared[segment.uri] = now
                        self.segments[segment.uri] = (segment.program_date, segment.seconds)
            await asyncio.sleep(0.05)


class CachedClient:
    """An hls.js-like player behind a CDN: it reads the playlist through a cache with a
    1 s TTL (CloudFront's playlist policy), reloads it every target duration (half that
    when nothing changed, as hls.js does), starts `behind` target durations before the
    live edge it first sees, and plays in real time, stalling whenever the next segment
    is not known to it yet. Notes when it learned of each segment."""

    def __init__(self, url: str, behind: int, starts_at: float) -> None:
        self.url = url
        self.behind = behind
        self.starts_at = starts_at
        self._cached: tuple[float, bytes | None] = (0.0, None)
        # (wall time playback starts, program date played then)
        self.anchor: tuple[float, float] | None = None
        self.known: dict[str, float] = {}
        self.dates: dict[str, tuple[float, float]] = {}

    def _playlist(self) -> bytes | None:
        fetched_at, _ = self._cached
        if time.time() - fetched_at >= 1.0:
            self._cached = (time.time(), _fetch(self.url))
        return self._cached[1]

    async def run(self, until: float) -> None:
        await asyncio.sleep(max(0.0, self.starts_at - time.time()))
        while time.time() < until:
            body = await asyncio.to_thread(self._playlist)
            now, changed, target = time.time(), False, 1.0
            if body:
                playlist = parse_playlist(body.decode())
                target = float(playlist.target_duration)
                for segment in playlist.segments:
                    if segment.uri not in self.known and segment.program_date is not None:
                        self.known[segment.uri] = now
                        self.dates[segment.uri] = (segment.program_date, segment.seconds)
                        changed = True
                dated = [s for s in playlist.segments if s.program_date is not None]
                if self.anchor is None and len(dated) > self.behind:
                    # hls.js's live start: the live edge less `behind` target durations.
                    last = dated[-1]
                    assert last.program_date is not None
                    edge = last.program_date + last.seconds
                    self.anchor = (now, edge - self.behind * target)
            await asyncio.sleep(target if changed else target / 2)

    def offsets(self) -> list[tuple[float, float, float]]:
        """(first date, end date, wall - date while playing it) for each segment played,
        the offset growing by each stall."""
        if self.anchor is None:
            return []
        wall, start = self.anchor
        offset = wall - start
        played = []
        for uri, (date, seconds) in sorted(self.dates.items(), key=lambda i: i[1][0]):
            if date + seconds <= start:
                continue
            due = max(date, start) + offset
            offset += max(0.0, self.known[uri] - due)
            played.append((date, date + seconds, offset))
        return played

    def plays_at(self, program_date: float) -> float | None:
        for first, end, offset in self.offsets():
            if first <= program_date < end:
                return program_date + offset
        return None

    def stalls(self) -> int:
        offsets = [offset for _, _, offset in self.offsets()]
        return sum(1 for a, b in itertools.pairwise(offsets) if b > a)


def _onset_dates(watcher: Watcher) -> list[float]:
    """Each burst's onset in the segments, as a program date (wall time when mixed)."""
    onsets: list[float] = []
    for uri, (date, _) in sorted(watcher.segments.items(), key=lambda i: i[1][0]):
        body = _fetch(f"{watcher.base}/{uri}")
        if body is None:
            continue
        samples = decode(body)
        # 10 ms energy windows; an onset: loud after at least 100 ms of quiet.
        window = 480
        levels = np.sqrt(np.mean(samples[: samples.size // window * window]
                                 .reshape(-1, window) ** 2, axis=1))
        for index in range(len(levels)):
            if levels[index] > 0.05 and (index < 10 or levels[index - 10:index].max() < 0.01):
                onset = date + index * window / SAMPLE_RATE
                if not onsets or onset - onsets[-1] > 1.0:
                    onsets.append(onset)
    return onsets


def latency(seconds: float, state: Path) -> dict[str, Any]:
    local = LocalRun.prepare(state).start()
    try:
        status, space = local.call("POST", "/spaces", "u-alice", {"title": "Bench"})
        assert status == 201, space
        space_id, url = space["space_id"], space["playback"]["hls_url"]

        async def scenario() -> tuple[BurstTrack, Watcher, list[CachedClient]]:
            status, joined = local.call("POST", f"/spaces/{space_id}/join", "u-alice")
            assert status == 200, joined
            track = BurstTrack(440, tone_frames=BURST_FRAMES, cycle_frames=BURST_EVERY_FRAMES,
                               clock=time.time)
            session = MediaSession(joined["media"]["ice_servers"], track)
            await session.open(joined["media"]["url"], joined["token"])
            watcher = Watcher(url)
            until = time.time() + seconds
            # Players tuning in at different moments: each one's luck with the cache
            # and the segment boundaries is its own.
            clients = [CachedClient(url, behind, time.time() + 4 + 5 * n)
                       for n in range(6) for behind in (3, 2)]
            try:
                await asyncio.sleep(4)
                await asyncio.gather(watcher.run(until), *(c.run(until) for c in clients))
            finally:
                await session.close()
            return track, watcher, clients

        track, watcher, clients = asyncio.run(scenario())
        # Read while the origin still serves them.
        onsets = _onset_dates(watcher)
    finally:
        local.kill()
    to_origin = [watcher.appeared[uri] - (date + length)
                 for uri, (date, length) in watcher.segments.items()]
    first_sample = [watcher.appeared[uri] - date for uri, (date, _) in watcher.segments.items()]
    # Skip what the origin listed before the watcher started (its first sight of them).
    to_origin, first_sample = to_origin[6:], first_sample[6:]
    sent = sorted(track.onsets)
    glass: dict[str, list[float]] = {}
    stalls: dict[str, int] = {}
    for client in clients:
        name = f"behind_{client.behind}_target_durations"
        found = glass.setdefault(name, [])
        for date in onsets:
            played = client.plays_at(date)
            # The burst sent last before it was mixed is the one heard.
            before = [t for t in sent if t <= date]
            if played is not None and before:
                found.append(played - before[-1])
        stalls[name] = stalls.get(name, 0) + client.stalls()
    return {
        "seconds": seconds,
        "segments_seen": len(watcher.segments),
        "mix_to_origin_seconds": {
            "last_sample_mixed": summary(to_origin),
            "first_sample_mixed": summary(first_sample)},
        "glass_to_glass_seconds": {k: summary(v) for k, v in glass.items()},
        "players_per_setting": len(clients) // 2,
        "stalls": stalls,
        "goal_p95_seconds": GOAL_P95_SECONDS,
        "met": (percentile(glass["behind_3_target_durations"], 0.95) or 1e9)
        <= GOAL_P95_SECONDS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=6)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--window-seconds", type=float, default=20.0)
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--latency-only", action="store_true",
                        help="skip the CPU comparison (its figures are left out)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    # The embedded S3 would log every segment written.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-hls-") as scratch:
        cpu = None if args.latency_only else node_cpu(
            args.rooms, args.windows, args.window_seconds, Path(scratch))
        print("cpu:", cpu, flush=True)
        delay = latency(args.latency_seconds, Path(scratch) / "local")
        print("latency:", delay, flush=True)
    write_results(args.out, "hls.json", " ".join(["python -m bench.hls", *sys.argv[1:]]), started,
                  {"node_cpu": cpu, "latency": delay}, pinned=False)


if __name__ == "__main__":
    main()
