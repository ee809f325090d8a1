"""HLS through the API: joins that choose or are given HLS (and count without writing
the Space's item), recording, the replay settled from the bucket, its deletion, a
host's replays, and a bucket that fails."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import jwt
import numpy as np
import pytest

from chalicelib.platform.config import settings
from chalicelib.platform.models import ListenerCount, Member, Space
from chalicelib.rooms import hls
from chalicelib.rooms.audience import SHARDS
from media_node.hls.segments import Segmenter
from tests.events import sqs_event
from tests.functional.conftest import World
from tests.hls import parse_playlist

BUCKET = "parlor-hls-functional"
BASE = "https://site.example/hls"


@pytest.fixture
def bucket(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("HLS_BUCKET", BUCKET)
    monkeypatch.setenv("HLS_BASE_URL", BASE)
    settings.cache_clear()
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    world.node("node-a")
    yield s3
    settings.cache_clear()


def _space_item(space_id: str) -> dict[str, Any]:
    return dict(Space.get(space_id, consistent_read=True).attribute_values)


def _keys(s3: Any, space_id: str) -> list[str]:
    found = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"hls/{space_id}/").get("Contents", [])
    return sorted(item["Key"] for item in found)


def _upload_run(s3: Any, space_id: str, run: int, seconds: int, skip: int | None = None) -> float:
    """Real segments, as a node writes them: returns their total length."""
    segmenter = Segmenter(48000, 1.0)
    made = []
    for tick in range(seconds * 50):
        t = (tick * 960 + np.arange(960)) / 48000
        made += segmenter.push((8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int32))
    made += segmenter.finish()
    total = 0.0
    for segment in made:
        if segment.index == skip:
            continue
        s3.put_object(Bucket=BUCKET, Key=f"hls/{space_id}/{run}/{segment.index:06d}-"
                      f"{segment.samples}.ts", Body=segment.data, Tagging="recorded=true")
        total += segment.seconds
    return total


def _finished(world: World, space_id: str) -> dict[str, Any]:
    """A node's hls_finished, delivered in a batch with another event."""
    body = json.dumps({"v": 1, "type": "hls_finished", "node_id": "node-a",
                       "space_id": space_id, "run": 1, "ended": True, "segments": 3,
                       "at": time.time()})
    other = json.dumps({"v": 1, "type": "node_draining", "node_id": "node-b",
                        "at": time.time()})
    event = sqs_event(body, other)
    return world.client.lambda_.invoke("handle_media_events", event).payload  # type: ignore[no-any-return]


def test_a_recorded_space_says_so_and_where_its_hls_is(world: World, bucket: Any) -> None:
    alice = world.host()
    created = alice.post("/spaces", {"title": "On the record", "record": True})
    assert created.status == 201
    space_id = created.json["space_id"]
    assert created.json["playback"] == {
        "state": "live", "hls_url": f"{BASE}/{space_id}/live.m3u8", "recording": True,
        "duration_seconds": None}
    joined = alice.post(f"/spaces/{space_id}/join")
    assert joined.json["transport"] == "webrtc"
    claims = jwt.decode(joined.json["token"], options={"verify_signature": False})
    assert claims["rec"] is True
    plain = world.user("bob", followers=600)
    other = plain.post("/spaces", {"title": "Off the record"}).json
    assert other["playback"]["recording"] is False
    token = plain.post(f"/spaces/{other['space_id']}/join").json["token"]
    assert "rec" not in jwt.decode(token, options={"verify_signature": False})


def test_a_scheduled_space_is_recorded_as_scheduled_or_as_started(
        world: World, bucket: Any) -> None:
    alice = world.host()
    later = time.time() + 3600
    scheduled = alice.post("/spaces", {"title": "Later", "scheduled_start": later,
                                       "record": True}).json
    assert scheduled["playback"] == {"state": "none", "hls_url": None, "recording": True,
                                     "duration_seconds": None}
    started = alice.post(f"/spaces/{scheduled['space_id']}/start", {"record": False})
    assert started.json["playback"]["recording"] is False
    assert started.json["playback"]["state"] == "live"
    assert alice.post(f"/spaces/{scheduled['space_id']}/start", {"record": "yes"}).status == 400


def test_an_hls_join_answers_a_playlist_and_writes_nothing_to_the_space(
        world: World, bucket: Any) -> None:
    alice = world.host()
    space_id = world.live_space(alice)
    before = _space_item(space_id)
    bob = world.user("bob")
    joined = bob.post(f"/spaces/{space_id}/join", {"transport": "hls"})
    assert joined.status == 200
    assert joined.json == {"space_id": space_id, "transport": "hls", "role": "listener",
                           "reason": "requested", "hls_url": f"{BASE}/{space_id}/live.m3u8",
                           "recording": False}
    assert _space_item(space_id) == before
    assert Member.get(space_id, "u-bob").listener_shard in range(SHARDS)
    assert alice.get(f"/spaces/{space_id}").json["listener_count"] == 1
    assert alice.get("/spaces/live").json["items"][0]["listener_count"] == 1
    # Joining again changes nothing; the count is of people.
    bob.post(f"/spaces/{space_id}/join", {"transport": "hls"})
    assert alice.get(f"/spaces/{space_id}").json["listener_count"] == 1
    # Later over WebRTC: the seat moves from its shard to the Space.
    assert bob.post(f"/spaces/{space_id}/join").json["transport"] == "webrtc"
    assert Member.get(space_id, "u-bob").listener_shard is None
    detail = alice.get(f"/spaces/{space_id}").json
    assert detail["listener_count"] == 1
    assert int(Space.get(space_id).listener_count) == 1
    assert sum(int(c.listeners) for c in ListenerCount.query(space_id)) == 0


def test_hls_listeners_request_to_speak_and_move_to_the_stage(
        world: World, bucket: Any) -> None:
    alice = world.host()
    space_id = world.live_space(alice)
    bob = world.user("bob")
    bob.post(f"/spaces/{space_id}/join", {"transport": "hls"})
    assert bob.post(f"/spaces/{space_id}/requests").status == 200
    assert alice.post(f"/spaces/{space_id}/requests/u-bob/approve").status == 200
    # On stage now: the API gives a speaker WebRTC, and refuses it HLS.
    detail = alice.get(f"/spaces/{space_id}").json
    assert (detail["speaker_count"], detail["listener_count"]) == (1, 0)
    again = bob.post(f"/spaces/{space_id}/join", {"transport": "hls"})
    assert (again.status, again.json["error"]) == (409, "on_stage")
    joined = bob.post(f"/spaces/{space_id}/join")
    assert (joined.json["transport"], joined.json["role"]) == ("webrtc", "speaker")
    alice.post(f"/spaces/{space_id}/members/u-bob/demote")
    assert alice.get(f"/spaces/{space_id}").json["listener_count"] == 1
    carol = world.user("carol")
    carol.post(f"/spaces/{space_id}/join", {"transport": "hls"})
    assert carol.post(f"/spaces/{space_id}/leave").status == 200
    assert alice.get(f"/spaces/{space_id}").json["listener_count"] == 1
    assert sum(int(c.listeners) for c in ListenerCount.query(space_id)) == 0


def test_a_join_that_finds_the_webrtc_limit_reached_answers_hls(
        world: World, bucket: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBRTC_LISTENER_LIMIT", "1")
    settings.cache_clear()
    alice = world.host()
    space_id = world.live_space(alice)
    first = world.user("bob").post(f"/spaces/{space_id}/join").json
    assert first["transport"] == "webrtc"
    second = world.user("carol").post(f"/spaces/{space_id}/join").json
    assert (second["transport"], second["reason"]) == ("hls", "webrtc_full")
    # The host and those already seated keep WebRTC.
    assert alice.post(f"/spaces/{space_id}/join").json["transport"] == "webrtc"
    assert world.caller("u-bob").post(f"/spaces/{space_id}/join").json["transport"] == "webrtc"
    assert alice.get(f"/spaces/{space_id}").json["listener_count"] == 2


def test_a_join_that_finds_every_node_full_answers_hls(world: World, bucket: Any) -> None:
    alice = world.host()
    space_id = world.live_space(alice)
    alice.post(f"/spaces/{space_id}/join")
    world.node("node-a", full_spaces=[space_id])
    world.node("node-b", participants=100, capacity=100)
    joined = world.user("bob").post(f"/spaces/{space_id}/join").json
    assert (joined["transport"], joined["reason"]) == ("hls", "webrtc_full")
    # A node with room relays the Space over WebRTC again.
    world.node("node-b", participants=10, capacity=100)
    assert world.user("carol").post(f"/spaces/{space_id}/join").json["transport"] == "webrtc"


def test_bad_transports_and_a_deployment_without_hls(world: World,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    world.node("node-a")
    alice = world.host()
    space_id = world.live_space(alice)
    bob = world.user("bob")
    for body in ({"transport": "carrier-pigeon"}, {"transport": 7}, {"via": "hls"}):
        reply = bob.post(f"/spaces/{space_id}/join", body)
        assert (reply.status, reply.json["error"]) == (400, "invalid_field")
    monkeypatch.delenv("HLS_BUCKET", raising=False)
    settings.cache_clear()
    reply = bob.post(f"/spaces/{space_id}/join", {"transport": "hls"})
    assert (reply.status, reply.json["error"]) == (503, "hls_unavailable")
    assert alice.get(f"/spaces/{space_id}").json["playback"]["state"] == "none"


def test_a_recorded_space_becomes_a_replay_that_its_host_deletes(
        world: World, bucket: Any) -> None:
    alice = world.host()
    space_id = alice.post("/spaces", {"title": "Kept", "record": True}).json["space_id"]
    run = int(time.time() * 1000)
    seconds = _upload_run(bucket, space_id, run, 4)
    # A second run, after the first's worker died, with one segment never written.
    seconds += _upload_run(bucket, space_id, run + 5000, 3, skip=1)
    # Live, a node's finish settles nothing.
    assert _finished(world, space_id) == {"batchItemFailures": []}
    assert f"hls/{space_id}/index.m3u8" not in _keys(bucket, space_id)
    alice.post(f"/spaces/{space_id}/end")
    assert _finished(world, space_id) == {"batchItemFailures": []}

    playback = alice.get(f"/spaces/{space_id}").json["playback"]
    assert playback["state"] == "replay"
    assert playback["hls_url"] == f"{BASE}/{space_id}/index.m3u8"
    assert playback["duration_seconds"] == pytest.approx(seconds, abs=0.01)
    body = bucket.get_object(Bucket=BUCKET, Key=f"hls/{space_id}/index.m3u8")["Body"]
    replay = parse_playlist(body.read().decode())
    assert replay.ended
    assert replay.playlist_type == "VOD"
    assert replay.seconds == pytest.approx(seconds, abs=0.01)
    assert [s.discontinuity for s in replay.segments].count(True) == 2
    assert replay.segments[0].program_date == pytest.approx(run / 1000, abs=0.001)
    replays = alice.get("/users/u-alice/replays").json
    assert [r["space_id"] for r in replays["items"]] == [space_id]
    assert replays["items"][0]["duration_seconds"] == pytest.approx(seconds, abs=0.01)

    bob = world.user("bob")
    assert bob.delete(f"/spaces/{space_id}/recording").status == 403
    deleted = alice.delete(f"/spaces/{space_id}/recording")
    assert deleted.json == {"space_id": space_id, "deleted": True}
    assert _keys(bucket, space_id) == []
    assert alice.get(f"/spaces/{space_id}").json["playback"]["state"] == "none"
    assert alice.get("/users/u-alice/replays").json["items"] == []
    again = alice.delete(f"/spaces/{space_id}/recording")
    assert (again.status, again.json["error"]) == (404, "recording_not_found")
    # A late settle (the sweep, an event retried) brings nothing back.
    _finished(world, space_id)
    assert _keys(bucket, space_id) == []


def test_deleting_a_live_or_unrecorded_spaces_recording_is_refused(
        world: World, bucket: Any) -> None:
    alice = world.host()
    live = alice.post("/spaces", {"title": "Live", "record": True}).json["space_id"]
    reply = alice.delete(f"/spaces/{live}/recording")
    assert (reply.status, reply.json["error"]) == (409, "space_live")
    alice.post(f"/spaces/{live}/end")
    plain = alice.post("/spaces", {"title": "Plain"}).json["space_id"]
    alice.post(f"/spaces/{plain}/end")
    reply = alice.delete(f"/spaces/{plain}/recording")
    assert (reply.status, reply.json["error"]) == (404, "recording_not_found")


def test_an_unrecorded_space_leaves_nothing_once_settled_by_the_sweep(
        world: World, bucket: Any) -> None:
    alice = world.host()
    space_id = world.live_space(alice)
    _upload_run(bucket, space_id, int(time.time() * 1000), 3)
    bucket.put_object(Bucket=BUCKET, Key=f"hls/{space_id}/live.m3u8", Body=b"#EXTM3U\n")
    alice.post(f"/spaces/{space_id}/end")
    # Its node died: no event. The sweep leaves it alone for a while, then settles it.
    assert hls.settle_due() == []
    assert len(_keys(bucket, space_id)) == 5
    assert hls.settle_due(now=time.time() + settings().hls_settle_seconds + 1) == [space_id]
    assert _keys(bucket, space_id) == []
    assert Space.get(space_id).hls_pending is None
    assert hls.settle_due(now=time.time() + 3600) == []


def test_a_bucket_that_fails_leaves_the_space_to_settle_later(
        world: World, bucket: Any) -> None:
    alice = world.host()
    space_id = alice.post("/spaces", {"title": "Kept", "record": True}).json["space_id"]
    alice.post(f"/spaces/{space_id}/end")
    bucket.delete_bucket(Bucket=BUCKET)
    # The record fails alone (SQS retries it, then the DLQ); the Space stays pending.
    assert len(_finished(world, space_id)["batchItemFailures"]) == 1
    assert Space.get(space_id).hls_pending == "pending"
    assert alice.get(f"/spaces/{space_id}").json["playback"] == {
        "state": "none", "hls_url": None, "recording": True, "duration_seconds": None}
    bucket.create_bucket(Bucket=BUCKET)
    seconds = _upload_run(bucket, space_id, int(time.time() * 1000), 2)
    assert hls.settle_due(now=time.time() + 3600) == [space_id]
    playback = alice.get(f"/spaces/{space_id}").json["playback"]
    assert playback["duration_seconds"] == pytest.approx(seconds, abs=0.01)


def test_replays_expire_from_the_hosts_list(world: World, bucket: Any) -> None:
    alice = world.host()
    space_id = alice.post("/spaces", {"title": "Old", "record": True}).json["space_id"]
    _upload_run(bucket, space_id, int(time.time() * 1000), 1)
    alice.post(f"/spaces/{space_id}/end")
    _finished(world, space_id)
    Space(space_id).update(actions=[Space.replay_expires_at.set(int(time.time()) - 1)])
    assert alice.get("/users/u-alice/replays").json["items"] == []
    assert alice.get(f"/spaces/{space_id}").json["playback"]["state"] == "none"
    assert world.caller("u-bob").get("/users/u-nobody/replays").status == 404
