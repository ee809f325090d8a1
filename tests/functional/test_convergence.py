"""The control plane's side of convergence, as a user, an attacker or a fault meets it:
authority versions in tokens and commands, commands derived from committed changes
(and retried when SQS refuses them), Spaces that end when abandoned, conditional role
writes, blocks, and the small defects a fuzzer found."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import jwt
import pytest

from chalicelib.platform.config import settings
from chalicelib.platform.errors import Conflict
from chalicelib.platform.models import Connection, MediaNode, Member, Space
from chalicelib.rooms import abandoned, roles, spaces
from tests.events import websocket_event
from tests.functional.alerting import Pipeline
from tests.functional.conftest import Caller, World


@pytest.fixture
def room(world: World) -> tuple[World, Caller, str, str]:
    queue = world.node("node-a")
    alice = world.host()
    space_id = world.live_space(alice)
    assert alice.post(f"/spaces/{space_id}/join").status == 200
    return world, alice, space_id, queue


def _beat(node_id: str, at: float) -> None:
    """The node's heartbeat at `at`: it is alive then."""
    MediaNode(node_id).update(actions=[MediaNode.heartbeat_at.set(at)])


def _received(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                   WaitTimeSeconds=0).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def _claims(reply: Any) -> dict[str, Any]:
    return jwt.decode(reply.json["token"], options={"verify_signature": False})


def _speaker(world: World, alice: Caller, space_id: str, handle: str) -> Caller:
    person = world.user(handle)
    person.post(f"/spaces/{space_id}/join")
    person.post(f"/spaces/{space_id}/requests")
    assert alice.post(f"/spaces/{space_id}/requests/{person.user_id}/approve").status == 200
    return person


# -- authority versions ----------------------------------------------------------------


def test_a_kept_token_is_older_than_the_demotion_the_node_is_told_of(
    room: tuple[World, Caller, str, str],
) -> None:
    world, alice, space_id, queue = room
    bob = _speaker(world, alice, space_id, "bob")
    kept = _claims(bob.post(f"/spaces/{space_id}/join"))
    assert (kept["role"], kept["muted"]) == ("speaker", False)
    world.commands(queue)

    assert alice.post(f"/spaces/{space_id}/members/u-bob/demote").status == 200
    [demoted] = world.commands(queue)
    assert (demoted["type"], demoted["role"]) == ("member", "listener")
    assert demoted["version"] > kept["ver"]
    # A join now carries the version the node was told of.
    fresh = _claims(bob.post(f"/spaces/{space_id}/join"))
    assert (fresh["role"], fresh["ver"]) == ("listener", demoted["version"])


def test_every_authority_change_is_a_higher_version(
    room: tuple[World, Caller, str, str],
) -> None:
    world, alice, space_id, queue = room
    bob = _speaker(world, alice, space_id, "bob")
    alice.post(f"/spaces/{space_id}/members/u-bob/mute")
    bob.put(f"/spaces/{space_id}/me/mute", {"muted": False})
    alice.post(f"/spaces/{space_id}/co-hosts", {"user_id": "u-bob"})
    alice.post(f"/spaces/{space_id}/members/u-bob/remove")
    sent = world.commands(queue)
    assert [(c["role"], c["muted"]) for c in sent] == [
        ("speaker", False), ("speaker", True), ("speaker", False), ("co_host", False),
        ("removed", False)]
    versions = [c["version"] for c in sent]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)


def test_requests_and_invitations_tell_the_node_nothing(
    room: tuple[World, Caller, str, str],
) -> None:
    world, alice, space_id, queue = room
    bob = world.user("bob")
    bob.post(f"/spaces/{space_id}/join")
    bob.post(f"/spaces/{space_id}/requests")
    alice.post(f"/spaces/{space_id}/requests/u-bob/deny")
    alice.post(f"/spaces/{space_id}/invitations/u-bob")
    bob.post(f"/spaces/{space_id}/invitation", {"accept": False})
    assert world.commands(queue) == []


# -- commands from committed state -------------------------------------------------------


def test_a_command_sqs_refuses_fails_its_record_for_a_retry(
    room: tuple[World, Caller, str, str],
) -> None:
    world, alice, space_id, queue = room
    _speaker(world, alice, space_id, "bob")
    boto3.client("sqs").delete_queue(QueueUrl=queue)
    member = boto3.client("dynamodb").get_item(
        TableName=Member.Meta.table_name, ConsistentRead=True,
        Key={"space_id": {"S": space_id}, "user_id": {"S": "u-bob"}})["Item"]
    from tests.events import dynamodb_stream_event

    event = dynamodb_stream_event((None, member))
    event["Records"][0]["eventName"] = "MODIFY"
    old = dict(member, authority={"N": "1"}, role={"S": "listener"})
    event["Records"][0]["dynamodb"]["OldImage"] = old
    payload = world.client.lambda_.invoke("dispatch_member_commands", event).payload
    assert len(payload["batchItemFailures"]) == 1
    # The queue back, the retried record is sent.
    boto3.client("sqs").create_queue(QueueName="cmd-node-a")
    payload = world.client.lambda_.invoke("dispatch_member_commands", event).payload
    assert payload == {"batchItemFailures": []}
    assert [(c["user_id"], c["role"]) for c in _received(queue)] == [("u-bob", "speaker")]


def test_end_reaches_the_node_and_a_move_closes_the_old_one(world: World) -> None:
    old_queue = world.node("node-a")
    alice = world.host()
    space_id = world.live_space(alice)
    assert alice.post(f"/spaces/{space_id}/join").json["node_id"] == "node-a"
    world.dispatch()
    # node-a falls silent; the next join moves the Space to node-b.
    MediaNode("node-a").update(actions=[MediaNode.heartbeat_at.set(time.time() - 60)])
    new_queue = world.node("node-b")
    assert alice.post(f"/spaces/{space_id}/join").json["node_id"] == "node-b"
    assert [(c["type"], c.get("reason")) for c in world.commands(old_queue)] == [
        ("close", "moved")]
    alice.post(f"/spaces/{space_id}/end")
    assert [c["type"] for c in world.commands(new_queue)] == ["end"]
    assert world.commands(old_queue) == []


def test_a_move_resets_the_presence_of_the_dead_node(world: World) -> None:
    world.node("node-a")
    alice = world.host()
    space_id = world.live_space(alice)
    alice.post(f"/spaces/{space_id}/join")
    Space(space_id).update(actions=[Space.on_stage_connected.add({"u-alice"}),
                                    Space.stage_empty_since.remove()])
    MediaNode("node-a").update(actions=[MediaNode.heartbeat_at.set(time.time() - 60)])
    world.node("node-b")
    alice.post(f"/spaces/{space_id}/join")
    space = spaces.load(space_id)
    assert space.on_stage_connected is None
    assert space.stage_empty_since is not None


# -- abandoned Spaces ---------------------------------------------------------------------


def test_a_space_nobody_on_stage_is_connected_to_ends_after_the_limit(
    room: tuple[World, Caller, str, str],
) -> None:
    world, alice, space_id, queue = room
    limit = settings().abandoned_space_seconds
    started = spaces.load(space_id).started_at
    assert started is not None
    _beat("node-a", started + limit - 1)
    assert abandoned.sweep(now=started + limit - 1) == []
    _beat("node-a", started + limit + 1)
    assert abandoned.sweep(now=started + limit + 1) == [space_id]
    assert alice.get(f"/spaces/{space_id}").json["state"] == "ended"
    assert [c["type"] for c in world.commands(queue)] == ["end"]
    # The host may start another: the end released their lock, as the host's own would.
    assert alice.post("/spaces", {"title": "Again"}).status == 201


def test_a_connected_host_keeps_the_space_and_leaving_starts_the_clock(
    room: tuple[World, Caller, str, str],
) -> None:
    from chalicelib.media import presence

    _world, _alice, space_id, _ = room
    now = time.time()
    presence.apply(presence.MediaEvent("participant_connected", "node-a", now, space_id,
                                       "u-alice"))
    limit = settings().abandoned_space_seconds
    _beat("node-a", now + 10 * limit)
    assert abandoned.sweep(now=now + 10 * limit) == []
    presence.apply(presence.MediaEvent("participant_left", "node-a", now + 1, space_id,
                                       "u-alice"))
    assert spaces.load(space_id).stage_empty_since == pytest.approx(now + 1)
    _beat("node-a", now + 2 + limit)
    assert abandoned.sweep(now=now + limit) == []
    assert abandoned.sweep(now=now + 2 + limit) == [space_id]


def test_the_spaces_of_a_dead_node_end_and_leave_the_bar(
    world: World, alerts: Pipeline,
) -> None:
    from chalicelib.media import presence

    world.node("node-a")
    alice = world.host()
    bob = world.user("bob")
    bob.put("/users/u-alice/follow")
    space_id = alerts.start_live(alice)
    alerts.drain()
    assert [s for s, _ in alerts.bar(bob)] == [space_id]
    alice.post(f"/spaces/{space_id}/join")
    now = time.time()
    alerts.change(space_id, lambda: presence.apply(presence.MediaEvent(
        "participant_connected", "node-a", now, space_id, "u-alice")))
    # The node dies: no participant_left, no more heartbeats.
    MediaNode("node-a").update(actions=[MediaNode.heartbeat_at.set(now)])
    limit = settings().abandoned_space_seconds
    assert abandoned.sweep(now=now + limit - 1) == []
    ended = alerts.change(space_id, lambda: abandoned.sweep(now=now + limit + 1))
    assert ended == [space_id]
    alerts.drain()
    assert alerts.bar(bob) == []
    assert alerts.entries(bob) == []


def test_a_space_whose_node_left_the_registry_ends(room: tuple[World, Caller, str, str]) -> None:
    from chalicelib.media import presence

    _world, _alice, space_id, _ = room
    presence.apply(presence.MediaEvent("participant_connected", "node-a", time.time(),
                                       space_id, "u-alice"))
    assert spaces.load(space_id).on_stage_connected == {"u-alice"}
    MediaNode("node-a").delete()
    now = time.time()
    limit = settings().abandoned_space_seconds
    assert abandoned.sweep(now=now) == []
    assert spaces.load(space_id).on_stage_connected is None
    assert abandoned.sweep(now=now + limit) == [space_id]


def test_someone_back_on_stage_meanwhile_keeps_the_space(
    room: tuple[World, Caller, str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    _world, _alice, space_id, _ = room
    started = spaces.load(space_id).started_at
    assert started is not None
    read = abandoned.empty_since

    def host_returns(*args: Any) -> Any:
        found = read(*args)
        Space(space_id).update(actions=[Space.on_stage_connected.add({"u-alice"})])
        return found

    monkeypatch.setattr(abandoned, "empty_since", host_returns)
    later = started + 10 * settings().abandoned_space_seconds
    _beat("node-a", later)
    assert abandoned.sweep(now=later) == []
    assert spaces.load(space_id).state == "live"


# -- role writes under races ---------------------------------------------------------------


def test_deny_does_not_recreate_someone_who_left(
    room: tuple[World, Caller, str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    world, alice, space_id, _ = room
    bob = world.user("bob")
    bob.post(f"/spaces/{space_id}/join")
    bob.post(f"/spaces/{space_id}/requests")
    stale = spaces.find_member(space_id, "u-bob")
    assert bob.post(f"/spaces/{space_id}/leave").status == 200
    # The deny read bob a moment before he left.
    monkeypatch.setattr(roles, "_member", lambda *_: stale)
    reply = alice.post(f"/spaces/{space_id}/requests/u-bob/deny")
    assert (reply.status, reply.json["error"]) == (404, "member_not_found")
    assert spaces.find_member(space_id, "u-bob") is None


def test_declining_after_leaving_recreates_nobody(
    room: tuple[World, Caller, str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    world, alice, space_id, _ = room
    bob = world.user("bob")
    bob.post(f"/spaces/{space_id}/join")
    alice.post(f"/spaces/{space_id}/invitations/u-bob")
    stale = spaces.find_member(space_id, "u-bob")
    bob.post(f"/spaces/{space_id}/leave")
    monkeypatch.setattr(roles, "_self", lambda *_: stale)
    reply = bob.post(f"/spaces/{space_id}/invitation", {"accept": False})
    assert reply.status == 404
    assert spaces.find_member(space_id, "u-bob") is None


def test_mute_all_reports_whom_it_could_not_mute(
    room: tuple[World, Caller, str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    world, alice, space_id, queue = room
    for handle in ("bob", "carol"):
        _speaker(world, alice, space_id, handle)
    world.commands(queue)
    set_muted = roles._set_muted

    def carol_keeps_changing(member: Member, muted: bool) -> None:
        if member.user_id == "u-carol":
            raise Conflict("changed", code="member_state_changed")
        set_muted(member, muted)

    monkeypatch.setattr(roles, "_set_muted", carol_keeps_changing)
    reply = alice.post(f"/spaces/{space_id}/mute-all")
    assert reply.json["muted"] == ["u-bob"]
    assert reply.json["not_muted"] == [{"user_id": "u-carol", "error": "member_state_changed"}]
    stage = {m["user_id"]: m["muted"] for m in alice.get(f"/spaces/{space_id}").json["stage"]}
    assert stage == {"u-alice": False, "u-bob": True, "u-carol": False}
    # The node hears of exactly what was written.
    assert [(c["user_id"], c["muted"]) for c in world.commands(queue)] == [("u-bob", True)]


# -- blocks ------------------------------------------------------------------------------


def test_a_blocked_user_cannot_follow_join_or_ask_to_speak(
    room: tuple[World, Caller, str, str],
) -> None:
    world, alice, space_id, _ = room
    troll = world.user("troll")
    assert troll.post(f"/spaces/{space_id}/join").status == 200
    assert troll.put("/users/u-alice/follow").status == 200
    followers = alice.get("/me").json["follower_count"]
    assert alice.put("/me/blocks/u-troll").status == 200
    # The block also ends the follow that was there.
    assert alice.get("/me").json["follower_count"] == followers - 1
    assert troll.get("/me").json["following_count"] == 0
    for reply in (troll.put("/users/u-alice/follow"),
                  troll.post(f"/spaces/{space_id}/join"),
                  troll.post(f"/spaces/{space_id}/requests")):
        assert (reply.status, reply.json["error"]) == (403, "blocked")
    assert alice.get("/me").json["follower_count"] == followers - 1
    assert alice.delete("/me/blocks/u-troll").status == 200
    assert troll.put("/users/u-alice/follow").status == 200


# -- small defects -------------------------------------------------------------------------


def test_unfollowing_yourself_is_a_400(world: World) -> None:
    bob = world.user("bob")
    reply = bob.delete("/users/u-bob/follow")
    assert (reply.status, reply.json["error"], reply.json["field"]) == (
        400, "invalid_field", "user_id")
    assert bob.get("/me").json["following_count"] == 0


def test_a_bodyless_request_is_not_judged_by_its_content_type(
    room: tuple[World, Caller, str, str],
) -> None:
    world, alice, space_id, _ = room
    bob = world.user("bob")
    octet = {"Content-Type": "application/octet-stream"}
    assert bob.call("POST", f"/spaces/{space_id}/join", headers=octet).status == 200
    assert bob.call("PUT", "/users/u-alice/follow", headers=octet).status == 200
    # A body still has to be JSON.
    refused = alice.call("POST", "/spaces", headers={"Content-Type": "text/plain"},
                         raw='{"title": "x"}')
    assert (refused.status, refused.json["error"]) == (415, "unsupported_media_type")
    charset = {"Content-Type": "application/json; charset=utf-8"}
    assert bob.call("PUT", "/me", headers=charset,
                    raw='{"handle": "bob", "display_name": "B"}').status == 200


def test_a_device_token_changes_hands(world: World, alerts: Pipeline) -> None:
    alice = world.host()
    bob, carol = world.user("bob"), world.user("carol")
    for fan in (bob, carol):
        fan.put("/users/u-alice/follow")
    phone = "token-shared-phone"
    alerts.device(bob, token=phone)
    # Carol signs in on the same phone.
    device = alerts.device(carol, token=phone)
    assert bob.get("/me/devices").json["items"] == []
    assert [d["device_id"] for d in carol.get("/me/devices").json["items"]] == [device]
    [endpoint] = [e for e in alerts.endpoints().values() if e.token == phone]
    assert endpoint.attributes["CustomUserData"] == "u-carol"
    alerts.start_live(alice)
    alerts.drain()
    # Both follow alice; the phone is carol's alone now, so it is alerted once.
    assert [json.loads(m)["default"] for m in endpoint.messages.values()] == [
        "@alice is hosting a Space: Morning chat"]


# -- abuse limits ----------------------------------------------------------------------------


def test_a_host_starting_spaces_in_a_loop_alerts_followers_a_few_times_only(
    world: World, alerts: Pipeline,
) -> None:
    alice = world.host()
    bob = world.user("bob")
    bob.put("/users/u-alice/follow")
    alerts.device(bob)
    limit = settings().alerting_starts_per_hour
    for n in range(limit + 2):
        space_id = alerts.start_live(alice, title=f"Again {n}")
        alerts.drain()
        alerts.change(space_id, lambda sid=space_id: alice.post(f"/spaces/{sid}/end"))
        alerts.drain()
    hosting = [p for p in alerts.pushes(bob) if "is hosting" in p]
    assert len(hosting) == limit


def test_a_user_holds_a_few_websocket_connections_at_most(
    world: World, alerts: Pipeline, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app import app

    bob = world.user("bob")
    closed: list[str] = []
    monkeypatch.setattr(app.websocket_api, "close", closed.append)
    limit = settings().connections_per_user
    for n in range(limit + 2):
        reply = world.client.lambda_.invoke(
            "ws_connect", websocket_event("$connect", f"conn-{n}", {"token": bob.token or ""}))
        assert reply.payload["statusCode"] == 200
        time.sleep(0.01)
    assert sorted(closed) == ["conn-0", "conn-1"]
    kept = {c.connection_id for c in Connection.scan()}
    assert kept == {f"conn-{n}" for n in range(2, limit + 2)}


def test_an_abandoned_end_needs_its_condition_to_hold(
    room: tuple[World, Caller, str, str],
) -> None:
    _world, _alice, space_id, _ = room
    started = spaces.load(space_id).started_at
    assert started is not None
    with pytest.raises(Conflict):
        spaces.end_as_abandoned(spaces.load(space_id), Space.on_stage_connected.exists())
    assert spaces.load(space_id).state == "live"
