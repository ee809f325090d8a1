"""Joining a Space's audio: placement on a media node and the join token."""

from __future__ import annotations

import time

import jwt
import pytest

from chalicelib.media.jointoken import new_key_pair
from chalicelib.platform.models import MediaNode
from tests.conftest import ICE_SERVERS, JOIN_PUBLIC_KEY
from tests.functional.conftest import World


def _claims(token: str) -> dict[str, object]:
    return jwt.decode(token, JOIN_PUBLIC_KEY, algorithms=["EdDSA"], audience="parlor-media",
                      issuer="parlor-control-plane")


def test_join_returns_a_token_the_node_can_verify(world: World) -> None:
    world.node("node-a")
    alice = world.host()
    space_id = world.live_space(alice)
    bob = world.user("bob")
    reply = bob.post(f"/spaces/{space_id}/join")
    assert reply.status == 200
    body = reply.json
    assert body["role"] == "listener"
    assert body["node_id"] == "node-a"
    assert body["media"] == {
        "url": f"http://node-a.test:8700/media/spaces/{space_id}/sessions",
        "ice_servers": ICE_SERVERS,
    }
    claims = _claims(body["token"])
    assert claims["sub"] == "u-bob"
    assert claims["space"] == space_id
    assert claims["role"] == "listener"
    assert claims["node"] == "node-a"
    assert 50 <= int(claims["exp"]) - time.time() <= 61  # type: ignore[call-overload]
    assert body["expires_at"] == claims["exp"]
    assert alice.get(f"/spaces/{space_id}").json["listener_count"] == 1
    # Joining again does not count twice.
    bob.post(f"/spaces/{space_id}/join")
    assert alice.get(f"/spaces/{space_id}").json["listener_count"] == 1


def test_a_token_signed_by_another_key_does_not_verify(world: World) -> None:
    world.node("node-a")
    alice = world.host()
    token = alice.post(f"/spaces/{world.live_space(alice)}/join").json["token"]
    other_private, _ = new_key_pair()
    forged = jwt.encode(_claims(token), other_private, algorithm="EdDSA")
    with pytest.raises(jwt.InvalidSignatureError):
        _claims(forged)


def test_least_loaded_healthy_node_wins_and_the_space_keeps_it(world: World) -> None:
    world.node("node-busy", participants=80, capacity=100)
    world.node("node-idle", participants=10, capacity=100)
    world.node("node-stale", participants=0, age=120)
    world.node("node-draining", participants=0, draining=True)
    alice = world.host()
    space_id = world.live_space(alice)
    assert alice.post(f"/spaces/{space_id}/join").json["node_id"] == "node-idle"
    # The idle node fills up; the Space stays where it is.
    MediaNode("node-idle").update(actions=[MediaNode.participants.set(95)])
    bob = world.user("bob")
    assert bob.post(f"/spaces/{space_id}/join").json["node_id"] == "node-idle"
    # Another Space now goes to the less loaded node.
    carol = world.host("carol")
    other = world.live_space(carol, "Other")
    assert carol.post(f"/spaces/{other}/join").json["node_id"] == "node-busy"


def test_a_space_moves_when_its_node_stops_heartbeating(world: World) -> None:
    world.node("node-a")
    alice = world.host()
    space_id = world.live_space(alice)
    assert alice.post(f"/spaces/{space_id}/join").json["node_id"] == "node-a"
    MediaNode("node-a").update(actions=[MediaNode.heartbeat_at.set(time.time() - 60)])
    world.node("node-b")
    assert alice.post(f"/spaces/{space_id}/join").json["node_id"] == "node-b"


def test_no_healthy_node_is_a_clear_503(world: World) -> None:
    world.node("node-stale", age=300)
    alice = world.host()
    space_id = world.live_space(alice)
    reply = alice.post(f"/spaces/{space_id}/join")
    assert reply.status == 503
    assert reply.json["error"] == "no_media_node"
    assert "media node" in reply.json["message"]


def test_a_role_change_shows_in_the_next_token(world: World) -> None:
    world.node("node-a")
    alice = world.host()
    space_id = world.live_space(alice)
    bob = world.user("bob")
    assert _claims(bob.post(f"/spaces/{space_id}/join").json["token"])["role"] == "listener"
    bob.post(f"/spaces/{space_id}/requests")
    alice.post(f"/spaces/{space_id}/requests/u-bob/approve")
    alice.post(f"/spaces/{space_id}/members/u-bob/mute")
    claims = _claims(bob.post(f"/spaces/{space_id}/join").json["token"])
    assert (claims["role"], claims["muted"]) == ("speaker", True)


def test_joining_needs_no_profile(world: World) -> None:
    world.node("node-a")
    alice = world.host()
    space_id = world.live_space(alice)
    anonymous = world.caller("u-just-listening")
    assert anonymous.post(f"/spaces/{space_id}/join").json["role"] == "listener"


def _full(node_id: str, space_id: str) -> None:
    """The node's heartbeat lists the Space as taking no more listeners there."""
    MediaNode(node_id).update(actions=[MediaNode.full_spaces.set([space_id])])


def test_listeners_beyond_the_owners_room_are_relayed_by_another_node(world: World) -> None:
    world.node("node-a", participants=10)
    world.node("node-b", participants=50)
    world.node("node-c", participants=20)
    alice = world.host()
    space_id = world.live_space(alice)
    assert alice.post(f"/spaces/{space_id}/join").json["node_id"] == "node-a"
    _full("node-a", space_id)

    body = world.user("bob").post(f"/spaces/{space_id}/join").json
    assert body["node_id"] == "node-c"
    assert body["media"]["url"] == f"http://node-c.test:8700/media/spaces/{space_id}/sessions"
    claims = _claims(body["token"])
    assert (claims["node"], claims["origin"]) == ("node-c", "node-a")
    # The Space stays the owner's; its speakers join there, with no origin.
    host = _claims(alice.post(f"/spaces/{space_id}/join").json["token"])
    assert host["node"] == "node-a"
    assert "origin" not in host


def test_a_node_already_relaying_the_space_is_filled_first(world: World) -> None:
    world.node("node-a")
    world.node("node-busy-relay", participants=60)
    world.node("node-idle", participants=0)
    alice = world.host()
    space_id = world.live_space(alice)
    alice.post(f"/spaces/{space_id}/join")
    _full("node-a", space_id)
    MediaNode("node-busy-relay").update(actions=[MediaNode.relayed_spaces.set([space_id])])
    assert world.user("bob").post(f"/spaces/{space_id}/join").json["node_id"] == "node-busy-relay"
    # Once that relay is full for the Space too, the next node relays it.
    _full("node-busy-relay", space_id)
    assert world.user("carol").post(f"/spaces/{space_id}/join").json["node_id"] == "node-idle"


def test_an_owner_at_capacity_relays_its_listeners(world: World) -> None:
    world.node("node-a")
    world.node("node-b")
    alice = world.host()
    space_id = world.live_space(alice)
    alice.post(f"/spaces/{space_id}/join")
    MediaNode("node-a").update(actions=[MediaNode.participants.set(100)])
    claims = _claims(world.user("bob").post(f"/spaces/{space_id}/join").json["token"])
    assert (claims["node"], claims["origin"]) == ("node-b", "node-a")


def test_without_a_node_to_relay_the_owner_answers_for_itself(world: World) -> None:
    """No healthy node with room for the Space: the listener goes to the owner, which
    says full if it still is."""
    world.node("node-a")
    world.node("node-stale", age=120)
    world.node("node-draining", draining=True)
    world.node("node-full", participants=100)
    alice = world.host()
    space_id = world.live_space(alice)
    alice.post(f"/spaces/{space_id}/join")
    world.node("node-also-full", full_spaces=[space_id])
    _full("node-a", space_id)
    claims = _claims(world.user("bob").post(f"/spaces/{space_id}/join").json["token"])
    assert claims["node"] == "node-a"
    assert "origin" not in claims


def test_an_owner_without_a_private_url_is_not_relayed(world: World) -> None:
    """A registry entry written before relays: other nodes could not reach its feed."""
    world.node("node-old", private=False)
    alice = world.host()
    space_id = world.live_space(alice)
    alice.post(f"/spaces/{space_id}/join")
    world.node("node-new", participants=0)
    _full("node-old", space_id)
    claims = _claims(world.user("bob").post(f"/spaces/{space_id}/join").json["token"])
    assert claims["node"] == "node-old"
    assert "origin" not in claims


def test_a_draining_node_hands_its_spaces_to_a_healthy_one(world: World) -> None:
    """A deploy drains a node: the next join of its Space goes elsewhere, unless no
    other node is there, when the Space stays where its room is still open."""
    world.node("node-a")
    alice = world.host()
    space_id = world.live_space(alice)
    assert alice.post(f"/spaces/{space_id}/join").json["node_id"] == "node-a"
    world.node("node-a", draining=True)
    assert alice.post(f"/spaces/{space_id}/join").json["node_id"] == "node-a"
    world.node("node-b")
    assert alice.post(f"/spaces/{space_id}/join").json["node_id"] == "node-b"
