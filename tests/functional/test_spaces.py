"""Hosting eligibility and a Space's lifecycle: create, schedule, start, end, list."""

from __future__ import annotations

import time

import pytest

from chalicelib.platform.config import settings
from tests.conftest import ISSUER
from tests.functional.conftest import World


def test_eligibility_follows_the_threshold_through_real_follows(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTING_FOLLOWER_THRESHOLD", "3")
    settings.cache_clear()
    try:
        alice = world.user("alice")
        before = alice.get("/me/eligibility").json
        assert before == {"eligible": False, "reason": "not_enough_followers",
                          "message": "Hosting needs 3 followers; you have 0",
                          "threshold": 3, "follower_count": 0}
        refused = alice.post("/spaces", {"title": "Too early"})
        assert refused.status == 403
        assert refused.json["error"] == "not_eligible"
        assert refused.json["reason"] == "not_enough_followers"
        assert refused.json["threshold"] == 3
        for i in range(3):
            world.user(f"fan{i}").put("/users/u-alice/follow")
        after = alice.get("/me/eligibility").json
        assert after["eligible"] is True
        assert after["follower_count"] == 3
        assert alice.post("/spaces", {"title": "Now I can"}).status == 201
    finally:
        settings.cache_clear()


def test_threshold_zero_opens_hosting_to_everyone(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTING_FOLLOWER_THRESHOLD", "0")
    settings.cache_clear()
    try:
        newcomer = world.user("newcomer")
        assert newcomer.get("/me/eligibility").json["eligible"] is True
        assert newcomer.post("/spaces", {"title": "Hello"}).status == 201
    finally:
        settings.cache_clear()


def test_default_threshold_is_600(world: World) -> None:
    nearly = world.user("nearly", followers=599)
    reply = nearly.get("/me/eligibility").json
    assert (reply["eligible"], reply["threshold"]) == (False, 600)
    assert world.user("enough", followers=600).get("/me/eligibility").json["eligible"] is True


def test_suspended_accounts_never_host(world: World) -> None:
    alice = world.host()
    admin = world.caller("u-admin", token=ISSUER.mint("u-admin", groups=["admin"]))
    assert alice.put("/users/u-alice/suspension", {"suspended": True}).status == 403
    assert admin.put("/users/u-alice/suspension", {"suspended": True}).status == 200
    reply = alice.get("/me/eligibility").json
    assert (reply["eligible"], reply["reason"]) == (False, "suspended")
    refused = alice.post("/spaces", {"title": "Banned"})
    assert (refused.status, refused.json["reason"]) == (403, "suspended")


def test_a_host_goes_live_and_ends(world: World) -> None:
    alice = world.host()
    created = alice.post("/spaces", {"title": "Morning chat", "topics": ["tech", "Tech", "ai"]})
    assert created.status == 201
    space = created.json
    assert space["state"] == "live"
    assert space["topics"] == ["tech", "ai"]
    assert space["host"]["handle"] == "alice"
    assert space["stage"] == [{"user_id": "u-alice", "handle": "alice",
                               "display_name": "Alice", "avatar_url": None, "role": "host",
                               "muted": False}]
    assert space["me"]["role"] == "host"
    live = alice.get("/spaces/live").json["items"]
    assert [s["space_id"] for s in live] == [space["space_id"]]
    ended = alice.post(f"/spaces/{space['space_id']}/end")
    assert ended.status == 200
    assert ended.json["state"] == "ended"
    assert alice.get("/spaces/live").json["items"] == []
    assert alice.post("/spaces", {"title": "Second one"}).status == 201


def test_one_live_space_per_host(world: World) -> None:
    alice = world.host()
    first = world.live_space(alice)
    second = alice.post("/spaces", {"title": "Another"})
    assert second.status == 409
    assert second.json == {"error": "already_hosting",
                           "message": "You are already hosting a live Space",
                           "live_space_id": first}


def test_only_the_host_ends(world: World) -> None:
    alice = world.host()
    bob = world.user("bob")
    space_id = world.live_space(alice)
    reply = bob.post(f"/spaces/{space_id}/end")
    assert (reply.status, reply.json["error"]) == (403, "not_host")
    assert alice.get(f"/spaces/{space_id}").json["state"] == "live"


def test_scheduling_and_starting(world: World) -> None:
    alice = world.host()
    soon = time.time() + 3600
    reply = alice.post("/spaces", {"title": "Later", "scheduled_start": soon})
    assert reply.status == 201
    assert reply.json["state"] == "scheduled"
    space_id = reply.json["space_id"]
    listed = alice.get("/users/u-alice/spaces/scheduled").json["items"]
    assert [s["space_id"] for s in listed] == [space_id]
    assert alice.get("/spaces/live").json["items"] == []
    # Hosting live meanwhile blocks starting the scheduled one.
    other = world.live_space(alice, "Impromptu")
    blocked = alice.post(f"/spaces/{space_id}/start")
    assert (blocked.status, blocked.json["error"]) == (409, "already_hosting")
    alice.post(f"/spaces/{other}/end")
    started = alice.post(f"/spaces/{space_id}/start")
    assert started.status == 200
    assert started.json["state"] == "live"
    assert alice.get("/users/u-alice/spaces/scheduled").json["items"] == []
    again = alice.post(f"/spaces/{space_id}/start")
    assert (again.status, again.json["error"]) == (409, "space_not_scheduled")


@pytest.mark.parametrize(
    ("offset", "message"),
    [(-60, "must be in the future"), (15 * 24 * 3600, "at most 14 days ahead")],
)
def test_schedule_window(world: World, offset: float, message: str) -> None:
    alice = world.host()
    reply = alice.post("/spaces", {"title": "x", "scheduled_start": time.time() + offset})
    assert reply.status == 400
    assert reply.json["field"] == "scheduled_start"
    assert message in reply.json["message"]


def test_live_list_pages_newest_first(world: World) -> None:
    hosts = [world.host(f"host{i}") for i in range(5)]
    ids = [world.live_space(h, f"Space {i}") for i, h in enumerate(hosts)]
    seen: list[str] = []
    cursor = None
    while True:
        reply = hosts[0].get("/spaces/live?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert reply.status == 200
        seen += [s["space_id"] for s in reply.json["items"]]
        cursor = reply.json["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))
