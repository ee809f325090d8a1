"""Profiles, following, follower lists and counts."""

from __future__ import annotations

from tests.functional.conftest import World


def test_a_user_creates_and_updates_a_profile(world: World) -> None:
    alice = world.caller("u-alice")
    assert alice.get("/me").status == 404
    created = alice.put("/me", {"handle": "alice", "display_name": "Alice A."})
    assert created.status == 200
    assert created.json == {
        "user_id": "u-alice", "handle": "alice", "display_name": "Alice A.",
        "follower_count": 0, "following_count": 0, "suspended": False,
        "bio": None, "avatar_url": None, "live_space_id": None,
    }
    renamed = alice.put("/me", {"handle": "alice_b", "display_name": "Alice B."})
    assert renamed.json["handle"] == "alice_b"
    assert alice.get("/users/by-handle/ALICE_B").json["user_id"] == "u-alice"
    assert alice.get("/users/by-handle/alice").status == 404


def test_handles_are_unique_whatever_the_case(world: World) -> None:
    world.user("alice")
    other = world.caller("u-other")
    reply = other.put("/me", {"handle": "Alice", "display_name": "Impostor"})
    assert reply.status == 409
    assert reply.json["error"] == "handle_taken"


def test_follow_is_idempotent_and_counts_are_exact(world: World) -> None:
    alice, bob = world.user("alice"), world.user("bob")
    for _ in range(3):
        reply = bob.put("/users/u-alice/follow")
        assert reply.status == 200
    assert alice.get("/me").json["follower_count"] == 1
    assert bob.get("/me").json["following_count"] == 1
    assert bob.delete("/users/u-alice/follow").status == 200
    assert bob.delete("/users/u-alice/follow").status == 200
    assert alice.get("/me").json["follower_count"] == 0
    assert bob.get("/me").json["following_count"] == 0


def test_follow_errors(world: World) -> None:
    bob = world.user("bob")
    assert bob.put("/users/u-bob/follow").json["error"] == "invalid_field"
    missing = bob.put("/users/u-nobody/follow")
    assert (missing.status, missing.json["error"]) == (404, "user_not_found")
    world.user("alice")
    stranger = world.caller("u-noprofile")
    reply = stranger.put("/users/u-alice/follow")
    assert (reply.status, reply.json["error"]) == (409, "profile_required")
    assert world.caller("u-alice").get("/me").json["follower_count"] == 0


def test_follower_lists_page_with_an_opaque_cursor(world: World) -> None:
    world.user("alice")
    fans = [world.user(f"fan{i:02d}") for i in range(7)]
    for fan in fans:
        assert fan.put("/users/u-alice/follow").status == 200
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        path = "/users/u-alice/followers?limit=3" + (f"&cursor={cursor}" if cursor else "")
        reply = fans[0].get(path)
        assert reply.status == 200, reply.json
        seen += [u["user_id"] for u in reply.json["items"]]
        pages += 1
        cursor = reply.json["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(f.user_id for f in fans)
    assert len(seen) == len(set(seen))
    assert pages >= 3
    following = fans[0].get("/users/u-fan00/following").json
    assert [u["handle"] for u in following["items"]] == ["alice"]


def test_a_cursor_from_another_list_is_refused(world: World) -> None:
    world.user("alice")
    bob = world.user("bob")
    for i in range(3):
        world.user(f"fan{i}").put("/users/u-bob/follow")
        world.caller(f"u-fan{i}").put("/users/u-alice/follow")
    cursor = bob.get("/users/u-bob/followers?limit=1").json["next_cursor"]
    assert cursor
    reply = bob.get(f"/users/u-alice/followers?limit=1&cursor={cursor}")
    assert reply.status == 400
    assert reply.json["field"] == "cursor"
