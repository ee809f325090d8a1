"""Bad input gets a clear error in one JSON shape, and never a 500.

Every route is sent a battery of malformed bodies, path ids and query strings; each
reply must be a 4xx in the {"error", "message"} shape."""

from __future__ import annotations

import base64
import json
import re

import pytest

from tests.functional.conftest import Caller, World

BAD_BODIES: list[str] = [
    "{not json",
    "[]",
    '"a string"',
    "123",
    "null",
    json.dumps({"unexpected": 1}),
    json.dumps({"title": 123, "handle": 7, "display_name": [], "user_id": {}, "muted": "yes",
                "accept": 1, "suspended": None, "topics": "tech"}),
    json.dumps({"title": "x" * 100_000}),
    json.dumps({"title": "ok", "topics": ["a", "b", "c", "d"]}),
    json.dumps({"title": "ok", "topics": [1, 2]}),
    json.dumps({"title": "ok", "scheduled_start": "tomorrow"}),
    json.dumps({"title": "ok", "scheduled_start": True}),
    json.dumps({"title": "ok", "scheduled_start": 1e308 * 10}),
    json.dumps({"handle": "no spaces allowed", "display_name": "x"}),
    json.dumps({"handle": "a" * 16, "display_name": "x"}),
    json.dumps({"user_id": "../../etc/passwd"}),
    "\udcff".encode("utf-8", "surrogateescape").decode("latin-1"),
]

BAD_IDS = ["x", "sp_UPPERCASE0000000000", "sp_" + "a" * 500, "%00", "a" * 300]

BAD_QUERIES = [
    "limit=0", "limit=-1", "limit=abc", "limit=100000", "cursor=", "cursor=%%%",
    "cursor=" + base64.urlsafe_b64encode(b"not json").decode(),
    "cursor=" + base64.urlsafe_b64encode(b'{"a": {"S": "b"}}').decode(),
    "cursor=" + base64.urlsafe_b64encode(b'[1, 2]').decode(),
    "cursor=" + "A" * 5000,
]


def _routes() -> list[tuple[str, str]]:
    from app import app

    return [(method, path) for path, methods in app.routes.items() for method in methods]


def _fill(path: str, space_id: str, user_id: str) -> str:
    return path.replace("{space_id}", space_id).replace("{user_id}", user_id).replace(
        "{handle}", "alice")


def _assert_client_error(reply_status: int, body: object, context: object) -> None:
    assert 400 <= reply_status < 500, context
    assert isinstance(body, dict), context
    assert isinstance(body.get("error"), str), context
    assert isinstance(body.get("message"), str), context
    assert re.fullmatch(r"[a-z_]+", body["error"]), context


@pytest.fixture
def setting(world: World) -> tuple[Caller, str]:
    world.node("node-a")
    alice = world.host()
    space_id = world.live_space(alice)
    world.user("bob").post(f"/spaces/{space_id}/join")
    return alice, space_id


def test_no_body_however_malformed_gives_a_500(
    world: World, setting: tuple[Caller, str]
) -> None:
    alice, space_id = setting
    for method, path in _routes():
        if method not in {"POST", "PUT"}:
            continue
        url = _fill(path, space_id, "u-bob")
        for raw in BAD_BODIES:
            reply = alice.call(method, url, raw=raw)
            if reply.status < 400:
                # A route without a body ignores it only when it takes no fields.
                assert raw in {"null"} or url.endswith(("/join", "/leave", "/start", "/end",
                                                         "/requests", "/approve", "/deny",
                                                         "/mute", "/remove", "/demote",
                                                         "/mute-all", "/follow",
                                                         "/reminder")) \
                    or any(part in url for part in ("/invitations/", "/me/blocks/",
                                                    "/me/muted/")), \
                    (method, url, raw, reply.json)
                continue
            _assert_client_error(reply.status, reply.json, (method, url, raw, reply.json))


def test_no_path_id_however_malformed_gives_a_500(
    world: World, setting: tuple[Caller, str]
) -> None:
    alice, space_id = setting
    for method, path in _routes():
        for bad in BAD_IDS:
            for url in {_fill(path, bad, "u-bob"), _fill(path, space_id, bad)}:
                reply = alice.call(method, url, body={})
                if reply.status < 400:
                    continue
                _assert_client_error(reply.status, reply.json, (method, url))


def test_bad_ids_name_the_field(world: World, setting: tuple[Caller, str]) -> None:
    alice, _ = setting
    reply = alice.get("/spaces/not-a-space")
    assert (reply.status, reply.json["field"]) == (400, "space_id")
    missing = alice.get("/spaces/sp_" + "0" * 20)
    assert (missing.status, missing.json["error"]) == (404, "space_not_found")


def test_no_query_however_malformed_gives_a_500(
    world: World, setting: tuple[Caller, str]
) -> None:
    alice, _ = setting
    for path in ("/spaces/live", "/users/u-alice/followers", "/users/u-alice/following",
                 "/users/u-alice/spaces/scheduled"):
        for query in BAD_QUERIES:
            reply = alice.get(f"{path}?{query}")
            assert reply.status == 400, (path, query, reply.json)
            assert reply.json["field"] in {"limit", "cursor"}, (path, query)


def test_messages_name_the_problem(world: World) -> None:
    alice = world.host()
    long_title = alice.post("/spaces", {"title": "x" * 71})
    assert long_title.json == {"error": "invalid_field", "field": "title",
                               "message": "'title' must be at most 70 characters"}
    unknown = alice.post("/spaces", {"title": "ok", "colour": "red"})
    assert unknown.json == {"error": "invalid_field", "field": "colour",
                            "message": "Unknown field 'colour'"}
    broken = alice.call("POST", "/spaces", raw="{")
    assert broken.json == {"error": "invalid_json", "message": "The body is not valid JSON"}
    too_many = alice.post("/spaces", {"title": "ok", "topics": ["a", "b", "c", "d"]})
    assert (too_many.json["field"], too_many.json["message"]) == (
        "topics", "'topics' takes at most 3 items")


def test_wrong_content_type_and_method_keep_the_shape(world: World) -> None:
    alice = world.host()
    reply = alice.call("POST", "/spaces", raw="title=x", headers={"Content-Type": "text/plain"})
    assert reply.status == 415
    assert reply.json["error"] == "unsupported_media_type"
    wrong = alice.call("DELETE", "/spaces/live")
    assert wrong.status == 405
    assert wrong.json["error"] == "method_not_allowed"
    assert alice.get("/spaces/live").json["items"] == []
