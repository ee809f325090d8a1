"""HLS under `make up`, with real processes: a recorded Space heard through the local
origin's /hls/* while it is live, its replay after the end (and its deletion), an
unrecorded Space that leaves nothing, a join that finds WebRTC full, and a worker
killed mid-recording."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from peer.participant import Participant
from tests.hls import Playlist, decode, parse_playlist, peak_hz, tone_level
from tests.localrun import LocalRun

pytestmark = pytest.mark.slow

BUCKET = "parlor-hls"


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    run = LocalRun.prepare(tmp_path_factory.mktemp("hls"))
    # One WebRTC listener per Space, to see the next join given HLS; two workers, to
    # kill the one holding a Space and keep the node.
    run.env.update({"WEBRTC_LISTENER_LIMIT": "1", "WORKERS": "2"})
    run.start()
    try:
        yield run
    finally:
        run.kill()


def _get(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def _playlist(url: str) -> Playlist | None:
    status, body, _ = _get(url)
    return parse_playlist(body.decode()) if status == 200 else None


def _keys(local: LocalRun, space_id: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{local.port('AWS')}",
                      region_name="us-east-1", aws_access_key_id="local",
                      aws_secret_access_key="local")
    found = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"hls/{space_id}/").get("Contents", [])
    return sorted(item["Key"] for item in found)


def _host(local: LocalRun, space_id: str) -> Participant:
    return Participant(local.api, lambda: local.issuer.mint("u-alice"), space_id, tone_hz=440)


async def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await asyncio.to_thread(check)
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)


def _playback(local: LocalRun, space_id: str, state: str) -> dict[str, Any] | None:
    status, detail = local.call("GET", f"/spaces/{space_id}", "u-bob")
    assert status == 200, detail
    playback: dict[str, Any] = detail["playback"]
    return playback if playback["state"] == state else None


def test_a_recorded_space_is_heard_over_hls_then_replayed_then_deleted(local: LocalRun) -> None:
    status, space = local.call("POST", "/spaces", "u-alice", {"title": "Hum", "record": True})
    assert status == 201, space
    space_id = space["space_id"]
    live_url = space["playback"]["hls_url"]
    assert live_url == f"{local.web}/hls/{space_id}/live.m3u8"

    async def scenario() -> dict[str, Any]:
        host = _host(local, space_id)
        events: list[dict[str, Any]] = []
        host.on_event = events.append
        await host.start()
        try:
            await asyncio.sleep(10)
            # Live: the playlist and its segments through the local origin, with the
            # headers CloudFront passes on, holding the host's 440 Hz.
            live = _playlist(live_url)
            assert live is not None
            assert not live.ended
            assert len(live.segments) >= 4
            _, _, headers = _get(live_url)
            assert headers["Cache-Control"] == "public, max-age=1"
            assert headers["Content-Type"] == "application/vnd.apple.mpegurl"
            for segment in live.segments[-3:]:
                status, body, headers = _get(f"{local.web}/hls/{space_id}/{segment.uri}")
                assert status == 200
                assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
                samples = decode(body)
                assert abs(peak_hz(samples) - 440) <= 2
                assert tone_level(samples, 440) > 0.05
            assert live.date_ranges[-1]["X-STAGE"] == "u-alice=host"
            welcome = next(e for e in events if e["type"] == "welcome")
            assert welcome["recording"] is True
        finally:
            status, ended = local.call("POST", f"/spaces/{space_id}/end", "u-alice")
            await host.stop()
        assert status == 200, ended
        return ended

    ended = asyncio.run(scenario())
    playback = asyncio.run(_wait(lambda: _playback(local, space_id, "replay"), 30,
                                 "the replay"))
    replay = _playlist(playback["hls_url"])
    assert replay is not None
    assert replay.ended
    # The Space's audio began when its host's connection opened the room (its first
    # segment's date): from then to its end, the replay holds all of it.
    began = replay.segments[0].program_date
    assert began is not None
    assert 0 <= began - ended["started_at"] < 10
    length = ended["ended_at"] - began
    assert abs(replay.seconds - length) <= 1.0, (replay.seconds, length)
    assert abs(playback["duration_seconds"] - replay.seconds) < 0.01
    # The live playlist ended too: players following it stop.
    final = _playlist(live_url)
    assert final is not None
    assert final.ended
    status, replays = local.call("GET", "/users/u-alice/replays", "u-bob")
    assert space_id in [r["space_id"] for r in replays["items"]]

    status, deleted = local.call("DELETE", f"/spaces/{space_id}/recording", "u-alice")
    assert (status, deleted) == (200, {"space_id": space_id, "deleted": True})
    assert _get(playback["hls_url"])[0] == 404
    assert _keys(local, space_id) == []


def test_an_unrecorded_space_leaves_no_segments(local: LocalRun) -> None:
    status, space = local.call("POST", "/spaces", "u-alice", {"title": "Gone"})
    assert status == 201, space
    space_id = space["space_id"]

    async def scenario() -> None:
        host = _host(local, space_id)
        await host.start()
        try:
            await _wait(lambda: _playlist(space["playback"]["hls_url"]), 20, "a playlist")
        finally:
            local.call("POST", f"/spaces/{space_id}/end", "u-alice")
            await host.stop()
        await _wait(lambda: not _keys(local, space_id), 30, "the segments to go")

    asyncio.run(scenario())
    assert _playback(local, space_id, "none") is not None


def test_a_join_that_finds_webrtc_full_answers_hls(local: LocalRun) -> None:
    status, space = local.call("POST", "/spaces", "u-alice", {"title": "Crowded"})
    assert status == 201, space
    space_id = space["space_id"]
    try:
        status, first = local.call("POST", f"/spaces/{space_id}/join", "u-bob")
        assert (status, first["transport"]) == (200, "webrtc")
        status, second = local.call("POST", f"/spaces/{space_id}/join", "u-carol")
        assert status == 200, second
        assert (second["transport"], second["reason"]) == ("hls", "webrtc_full")
        assert "token" not in second
        assert second["hls_url"] == f"{local.web}/hls/{space_id}/live.m3u8"
        status, chosen = local.call("POST", f"/spaces/{space_id}/join", "u-dave",
                                    {"transport": "hls"})
        assert (status, chosen["reason"]) == (200, "requested")
        _, detail = local.call("GET", f"/spaces/{space_id}", "u-alice")
        assert detail["listener_count"] == 3
    finally:
        local.call("POST", f"/spaces/{space_id}/end", "u-alice")


def test_a_worker_killed_mid_recording_leaves_what_it_uploaded_in_the_replay(
        local: LocalRun) -> None:
    status, space = local.call("POST", "/spaces", "u-alice", {"title": "Crash", "record": True})
    assert status == 201, space
    space_id = space["space_id"]

    async def scenario() -> list[str]:
        host = _host(local, space_id)
        await host.start()
        try:
            await _wait(lambda: len(_keys(local, space_id)) >= 5, 20, "segments")
            health = await asyncio.to_thread(local.node_health)
            holder = next(w for w in health["workers"] if w["rooms"])
            os.kill(holder["pid"], signal.SIGKILL)
            before = [k for k in await asyncio.to_thread(_keys, local, space_id)
                      if k.endswith(".ts")]
            # The host's client hears nothing, joins again, and the Space goes on in a
            # new run on the node's other worker (or this one, restarted).
            await _wait(lambda: host.outages and host.outages[-1].restored_at, 30,
                        "the host to rejoin")
            await _wait(lambda: len({k.split("/")[2] for k in _keys(local, space_id)
                                     if k.endswith(".ts")}) == 2, 20, "a second run")
            await asyncio.sleep(3)
            return before
        finally:
            local.call("POST", f"/spaces/{space_id}/end", "u-alice")
            await host.stop()

    before = asyncio.run(scenario())
    playback = asyncio.run(_wait(lambda: _playback(local, space_id, "replay"), 30,
                                 "the replay"))
    replay = _playlist(playback["hls_url"])
    assert replay is not None
    listed = {f"hls/{space_id}/{s.uri}" for s in replay.segments}
    assert set(before) <= listed
    assert sum(s.discontinuity for s in replay.segments) == 1
    first_run = [s for s in replay.segments if f"hls/{space_id}/{s.uri}" in before]
    for segment in first_run[1:3]:
        samples = decode(_get(f"{local.web}/hls/{space_id}/{segment.uri}")[1])
        assert tone_level(samples, 440) > 0.05
