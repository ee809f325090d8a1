"""The host allowlist: on a new deployment nobody has 600 followers, so administrators
let chosen users host; the eligibility answer says that is why."""

from __future__ import annotations

from typing import Any

from tests.conftest import ISSUER
from tests.functional.conftest import Caller, World


def _admin(world: World) -> Caller:
    return world.caller("u-admin", token=ISSUER.mint("u-admin", groups=["admin"]))


def test_an_allowlisted_user_without_followers_hosts(world: World) -> None:
    newcomer = world.user("newcomer")
    refused = newcomer.post("/spaces", {"title": "First"})
    assert (refused.status, refused.json["reason"]) == (403, "not_enough_followers")

    reply = _admin(world).put("/users/u-newcomer/hosting", {"allowed": True})
    assert reply.status == 200
    assert reply.json["user_id"] == "u-newcomer"
    assert reply.json["allowed"] is True
    assert reply.json["eligibility"]["eligible"] is True

    verdict: dict[str, Any] = newcomer.get("/me/eligibility").json
    assert (verdict["eligible"], verdict["reason"]) == (True, "allowlisted")
    assert verdict["follower_count"] == 0
    assert newcomer.post("/spaces", {"title": "First"}).status == 201


def test_taking_a_user_off_the_allowlist_brings_back_the_threshold(world: World) -> None:
    newcomer = world.user("newcomer")
    admin = _admin(world)
    assert admin.put("/users/u-newcomer/hosting", {"allowed": True}).status == 200
    reply = admin.put("/users/u-newcomer/hosting", {"allowed": False})
    assert (reply.status, reply.json["allowed"]) == (200, False)
    verdict = newcomer.get("/me/eligibility").json
    assert (verdict["eligible"], verdict["reason"]) == (False, "not_enough_followers")


def test_a_suspension_wins_over_the_allowlist(world: World) -> None:
    newcomer = world.user("newcomer")
    admin = _admin(world)
    admin.put("/users/u-newcomer/hosting", {"allowed": True})
    admin.put("/users/u-newcomer/suspension", {"suspended": True})
    verdict = newcomer.get("/me/eligibility").json
    assert (verdict["eligible"], verdict["reason"]) == (False, "suspended")


def test_only_administrators_allowlist(world: World) -> None:
    newcomer = world.user("newcomer")
    reply = newcomer.put("/users/u-newcomer/hosting", {"allowed": True})
    assert (reply.status, reply.json["error"]) == (403, "not_admin")
    assert newcomer.get("/me/eligibility").json["eligible"] is False


def test_bad_allowlist_requests(world: World) -> None:
    admin = _admin(world)
    world.user("newcomer")
    missing = admin.put("/users/u-nobody/hosting", {"allowed": True})
    assert (missing.status, missing.json["error"]) == (404, "user_not_found")
    for body in ({}, {"allowed": "yes"}, {"allowed": True, "extra": 1}):
        reply = admin.put("/users/u-newcomer/hosting", body)
        assert reply.status == 400, body
        assert reply.json["field"] in ("allowed", "extra"), reply.json
    not_json = admin.call("PUT", "/users/u-newcomer/hosting", raw="allowed",
                          headers={"Content-Type": "text/plain"})
    assert not_json.status == 415
