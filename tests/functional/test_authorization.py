"""The authorization matrix: who in a Space may do what.

Each case builds a room with one person in each role, lets every role that must be
refused try first (each gets 403 and changes nothing), then an allowed role succeeds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.functional.conftest import Caller, Reply, World

ROLES = ("host", "co_host", "speaker", "listener", "removed", "stranger")


@dataclass
class Room:
    space_id: str
    people: dict[str, Caller]
    target: Caller  # a second listener or speaker to act on


def _room(world: World, target_role: str) -> Room:
    world.node("node-a")
    host = world.host("host")
    space_id = world.live_space(host)
    people = {"host": host}
    for role in ("co_host", "speaker", "listener", "removed", "target"):
        person = world.user(role.replace("_", ""))
        person.post(f"/spaces/{space_id}/join")
        people[role] = person
    host.post(f"/spaces/{space_id}/co-hosts", {"user_id": people["co_host"].user_id})
    for role in ("speaker",) + (("target",) if target_role == "speaker" else ()):
        people[role].post(f"/spaces/{space_id}/requests")
        host.post(f"/spaces/{space_id}/requests/{people[role].user_id}/approve")
    if target_role == "requester":
        people["target"].post(f"/spaces/{space_id}/requests")
    host.post(f"/spaces/{space_id}/members/{people['removed'].user_id}/remove")
    people["stranger"] = world.user("stranger")
    return Room(space_id, people, people.pop("target"))


Action = Callable[[Caller, Room], Reply]

ACTIONS: dict[str, tuple[str, Action, set[str]]] = {
    "end": ("listener", lambda c, r: c.post(f"/spaces/{r.space_id}/end"), {"host"}),
    "add co-host": ("listener", lambda c, r: c.post(
        f"/spaces/{r.space_id}/co-hosts", {"user_id": r.target.user_id}), {"host"}),
    "list requests": ("requester", lambda c, r: c.get(f"/spaces/{r.space_id}/requests"),
                      {"host", "co_host"}),
    "approve": ("requester", lambda c, r: c.post(
        f"/spaces/{r.space_id}/requests/{r.target.user_id}/approve"), {"host", "co_host"}),
    "deny": ("requester", lambda c, r: c.post(
        f"/spaces/{r.space_id}/requests/{r.target.user_id}/deny"), {"host", "co_host"}),
    "invite": ("listener", lambda c, r: c.post(
        f"/spaces/{r.space_id}/invitations/{r.target.user_id}"), {"host", "co_host"}),
    "demote": ("speaker", lambda c, r: c.post(
        f"/spaces/{r.space_id}/members/{r.target.user_id}/demote"), {"host", "co_host"}),
    "mute": ("speaker", lambda c, r: c.post(
        f"/spaces/{r.space_id}/members/{r.target.user_id}/mute"), {"host", "co_host"}),
    "mute all": ("speaker", lambda c, r: c.post(f"/spaces/{r.space_id}/mute-all"),
                 {"host", "co_host"}),
    "remove": ("listener", lambda c, r: c.post(
        f"/spaces/{r.space_id}/members/{r.target.user_id}/remove"), {"host", "co_host"}),
}

CASES = [(name, role) for name, (_, _, allowed) in ACTIONS.items() for role in sorted(allowed)]


@pytest.mark.parametrize(("action", "allowed_role"), CASES)
def test_only_allowed_roles_act(world: World, action: str, allowed_role: str) -> None:
    target_role, act, allowed = ACTIONS[action]
    room = _room(world, target_role)
    before = room.people["host"].get(f"/spaces/{room.space_id}").json
    for role in ROLES:
        if role in allowed:
            continue
        reply = act(room.people[role], room)
        assert reply.status == 403, (action, role, reply.json)
        assert reply.json["error"] in {"not_host", "not_moderator", "removed"}
    after = room.people["host"].get(f"/spaces/{room.space_id}").json
    assert after == before
    reply = act(room.people[allowed_role], room)
    assert reply.status == 200, (action, allowed_role, reply.json)


def test_the_removed_cannot_take_part(world: World) -> None:
    room = _room(world, "listener")
    removed = room.people["removed"]
    for reply in (removed.post(f"/spaces/{room.space_id}/join"),
                  removed.post(f"/spaces/{room.space_id}/requests")):
        assert (reply.status, reply.json["error"]) == (403, "removed")
