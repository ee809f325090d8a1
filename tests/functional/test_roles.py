"""Roles in a live Space: requests, approvals, invitations, co-hosts, mutes, removal,
leaving, and the commands each change sends to the Space's media node."""

from __future__ import annotations

import pytest

from tests.functional.conftest import Caller, World


@pytest.fixture
def room(world: World) -> tuple[World, Caller, str, str]:
    """A live Space with its host joined (so it sits on a node), and the node's queue."""
    queue = world.node("node-a")
    alice = world.host()
    space_id = world.live_space(alice)
    assert alice.post(f"/spaces/{space_id}/join").status == 200
    return world, alice, space_id, queue


def _listener(world: World, space_id: str, handle: str) -> Caller:
    caller = world.user(handle)
    assert caller.post(f"/spaces/{space_id}/join").json["role"] == "listener"
    return caller


def test_request_approve_and_the_node_hears_of_it(room: tuple[World, Caller, str, str]) -> None:
    world, alice, space_id, queue = room
    bob = _listener(world, space_id, "bob")
    asked = bob.post(f"/spaces/{space_id}/requests")
    assert asked.json["requested_to_speak"] is True
    assert bob.post(f"/spaces/{space_id}/requests").status == 200  # asking twice is fine
    pending = alice.get(f"/spaces/{space_id}/requests").json["items"]
    assert [p["handle"] for p in pending] == ["bob"]
    assert bob.get(f"/spaces/{space_id}/requests").status == 403
    approved = alice.post(f"/spaces/{space_id}/requests/u-bob/approve")
    assert approved.status == 200
    assert approved.json["role"] == "speaker"
    space = alice.get(f"/spaces/{space_id}").json
    assert [(m["handle"], m["role"]) for m in space["stage"]] == [
        ("alice", "host"), ("bob", "speaker")]
    assert (space["speaker_count"], space["listener_count"]) == (1, 0)
    sent = world.commands(queue)
    assert [(c["type"], c["user_id"], c["role"], c["muted"]) for c in sent] == [
        ("member", "u-bob", "speaker", False)]
    assert all(c["v"] == 2 and c["space_id"] == space_id for c in sent)
    assert sent[0]["version"] > 0
    # A fresh join reflects the new role.
    assert bob.post(f"/spaces/{space_id}/join").json["role"] == "speaker"


def test_cancel_and_deny(room: tuple[World, Caller, str, str]) -> None:
    world, alice, space_id, _ = room
    bob = _listener(world, space_id, "bob")
    bob.post(f"/spaces/{space_id}/requests")
    assert bob.delete(f"/spaces/{space_id}/requests").json["requested_to_speak"] is False
    assert alice.get(f"/spaces/{space_id}/requests").json["items"] == []
    nothing = alice.post(f"/spaces/{space_id}/requests/u-bob/approve")
    assert (nothing.status, nothing.json["error"]) == (409, "no_request")
    bob.post(f"/spaces/{space_id}/requests")
    assert alice.post(f"/spaces/{space_id}/requests/u-bob/deny").json["role"] == "listener"
    assert alice.get(f"/spaces/{space_id}/requests").json["items"] == []


def test_invitation_accepted_and_declined(room: tuple[World, Caller, str, str]) -> None:
    world, alice, space_id, _ = room
    bob = _listener(world, space_id, "bob")
    carol = _listener(world, space_id, "carol")
    assert bob.post(f"/spaces/{space_id}/invitations/u-carol").status == 403
    assert alice.post(f"/spaces/{space_id}/invitations/u-bob").json["invited_to_speak"] is True
    alice.post(f"/spaces/{space_id}/invitations/u-carol")
    assert bob.post(f"/spaces/{space_id}/invitation", {"accept": True}).json["role"] == "speaker"
    declined = carol.post(f"/spaces/{space_id}/invitation", {"accept": False}).json
    assert (declined["role"], declined["invited_to_speak"]) == ("listener", False)
    again = carol.post(f"/spaces/{space_id}/invitation", {"accept": True})
    assert (again.status, again.json["error"]) == (409, "no_invitation")


def test_demote_and_step_down(room: tuple[World, Caller, str, str]) -> None:
    world, alice, space_id, queue = room
    bob = _listener(world, space_id, "bob")
    carol = _listener(world, space_id, "carol")
    for who in (bob, carol):
        who.post(f"/spaces/{space_id}/requests")
        alice.post(f"/spaces/{space_id}/requests/{who.user_id}/approve")
    world.commands(queue)
    assert bob.post(f"/spaces/{space_id}/members/u-carol/demote").status == 403
    assert alice.post(f"/spaces/{space_id}/members/u-bob/demote").json["role"] == "listener"
    assert carol.post(f"/spaces/{space_id}/members/u-carol/demote").json["role"] == "listener"
    assert [(c["type"], c["user_id"], c["role"]) for c in world.commands(queue)] == [
        ("member", "u-bob", "listener"), ("member", "u-carol", "listener")]
    space = alice.get(f"/spaces/{space_id}").json
    assert (space["speaker_count"], space["listener_count"]) == (0, 2)
    host = alice.post(f"/spaces/{space_id}/members/u-alice/demote")
    assert (host.status, host.json["error"]) == (403, "target_is_host")


def test_co_hosts_only_by_the_host_and_at_most_two(
    room: tuple[World, Caller, str, str]
) -> None:
    world, alice, space_id, queue = room
    people = [_listener(world, space_id, h) for h in ("bob", "carol", "dave")]
    bob = people[0]
    refused = bob.post(f"/spaces/{space_id}/co-hosts", {"user_id": "u-carol"})
    assert (refused.status, refused.json["error"]) == (403, "not_host")
    for who in people[:2]:
        reply = alice.post(f"/spaces/{space_id}/co-hosts", {"user_id": who.user_id})
        assert reply.json["role"] == "co_host"
    third = alice.post(f"/spaces/{space_id}/co-hosts", {"user_id": "u-dave"})
    assert (third.status, third.json["error"]) == (409, "co_host_limit")
    assert alice.get(f"/spaces/{space_id}").json["co_host_count"] == 2
    # A co-host moderates: approves a request.
    people[2].post(f"/spaces/{space_id}/requests")
    assert bob.post(f"/spaces/{space_id}/requests/u-dave/approve").json["role"] == "speaker"
    # But cannot end the Space or demote another co-host.
    assert bob.post(f"/spaces/{space_id}/end").status == 403
    assert bob.post(f"/spaces/{space_id}/members/u-carol/demote").status == 403
    types = [(c["type"], c.get("role")) for c in world.commands(queue)]
    assert types == [("member", "co_host"), ("member", "co_host"), ("member", "speaker")]


def test_mutes(room: tuple[World, Caller, str, str]) -> None:
    world, alice, space_id, queue = room
    bob, carol, dave = (_listener(world, space_id, h) for h in ("bob", "carol", "dave"))
    for who in (bob, carol):
        who.post(f"/spaces/{space_id}/requests")
        alice.post(f"/spaces/{space_id}/requests/{who.user_id}/approve")
    alice.post(f"/spaces/{space_id}/co-hosts", {"user_id": "u-dave"})
    world.commands(queue)
    assert alice.post(f"/spaces/{space_id}/members/u-bob/mute").json["muted"] is True
    # Only bob can unmute bob.
    assert alice.put(f"/spaces/{space_id}/me/mute", {"muted": False}).status == 200
    assert bob.put(f"/spaces/{space_id}/me/mute", {"muted": False}).json["muted"] is False
    assert carol.post(f"/spaces/{space_id}/members/u-bob/mute").status == 403
    cant = dave.post(f"/spaces/{space_id}/members/u-alice/mute")
    assert (cant.status, cant.json["error"]) == (403, "target_is_host")
    muted = dave.post(f"/spaces/{space_id}/mute-all").json["muted"]
    assert sorted(muted) == ["u-bob", "u-carol"]
    stage = {m["user_id"]: m["muted"] for m in alice.get(f"/spaces/{space_id}").json["stage"]}
    assert stage == {"u-alice": False, "u-bob": True, "u-carol": True, "u-dave": False}
    listener = _listener(world, space_id, "erin")
    not_on_stage = listener.put(f"/spaces/{space_id}/me/mute", {"muted": True})
    assert (not_on_stage.status, not_on_stage.json["error"]) == (409, "not_on_stage")
    sent = [(c["user_id"], c["role"], c["muted"]) for c in world.commands(queue)]
    assert sent[:2] == [("u-bob", "speaker", True), ("u-alice", "host", False)]
    assert sent[2] == ("u-bob", "speaker", False)
    assert sorted(sent[3:]) == [("u-bob", "speaker", True), ("u-carol", "speaker", True)]


def test_removed_people_cannot_rejoin(room: tuple[World, Caller, str, str]) -> None:
    world, alice, space_id, queue = room
    bob = _listener(world, space_id, "bob")
    bob.post(f"/spaces/{space_id}/requests")
    alice.post(f"/spaces/{space_id}/requests/u-bob/approve")
    world.commands(queue)
    removed = alice.post(f"/spaces/{space_id}/members/u-bob/remove")
    assert removed.json["role"] == "removed"
    rejoin = bob.post(f"/spaces/{space_id}/join")
    assert (rejoin.status, rejoin.json["error"]) == (403, "removed")
    assert bob.post(f"/spaces/{space_id}/requests").status == 403
    assert [(c["user_id"], c["role"]) for c in world.commands(queue)] == [("u-bob", "removed")]
    space = alice.get(f"/spaces/{space_id}").json
    assert (space["speaker_count"], space["listener_count"]) == (0, 0)
    # Someone can be kept out before they ever join.
    world.user("troll")
    alice.post(f"/spaces/{space_id}/members/u-troll/remove")
    assert world.caller("u-troll").post(f"/spaces/{space_id}/join").status == 403
    assert alice.post(f"/spaces/{space_id}/members/u-alice/remove").status == 400


def test_leaving(room: tuple[World, Caller, str, str]) -> None:
    world, alice, space_id, queue = room
    bob = _listener(world, space_id, "bob")
    bob.post(f"/spaces/{space_id}/requests")
    alice.post(f"/spaces/{space_id}/requests/u-bob/approve")
    world.commands(queue)
    assert bob.post(f"/spaces/{space_id}/leave").json["left"] is True
    space = alice.get(f"/spaces/{space_id}").json
    assert space["speaker_count"] == 0
    assert space["me"]["role"] == "host"
    assert [(c["type"], c["role"]) for c in world.commands(queue)] == [("member", "listener")]
    # Leaving is not a ban: bob comes back as a listener.
    assert bob.post(f"/spaces/{space_id}/join").json["role"] == "listener"
    # The host leaving ends the Space, and the node is told.
    assert alice.post(f"/spaces/{space_id}/leave").json["state"] == "ended"
    assert [c["type"] for c in world.commands(queue)] == ["end"]


def test_actions_need_a_live_space(world: World) -> None:
    world.node("node-a")
    alice = world.host()
    space_id = world.live_space(alice)
    bob = _listener(world, space_id, "bob")
    alice.post(f"/spaces/{space_id}/end")
    for reply in (bob.post(f"/spaces/{space_id}/requests"),
                  bob.post(f"/spaces/{space_id}/join"),
                  alice.post(f"/spaces/{space_id}/mute-all")):
        assert (reply.status, reply.json["error"]) == (409, "space_not_live")
