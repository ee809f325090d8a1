"""People: bios, finding people by prefix without a scan, relationships, avatars uploaded
with a presigned POST, upcoming Spaces of followed accounts, and reminder status."""

from __future__ import annotations

import base64
import io
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests

from chalicelib.platform.models import PeopleIndexEntry, User
from chalicelib.social import avatars
from tests.functional.conftest import Caller, World

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def test_a_bio_is_kept_changed_and_cleared(world: World) -> None:
    alice = world.user("alice")
    reply = alice.put("/me", {"handle": "alice", "display_name": "Alice", "bio": "Hosts tech talk"})
    assert reply.json["bio"] == "Hosts tech talk"
    # Leaving it out keeps it; an empty string clears it.
    assert alice.put("/me", {"handle": "alice", "display_name": "A"}).json["bio"] == \
        "Hosts tech talk"
    assert alice.put("/me", {"handle": "alice", "display_name": "A", "bio": ""}).json["bio"] \
        is None
    too_long = alice.put("/me", {"handle": "alice", "display_name": "A", "bio": "x" * 161})
    assert (too_long.status, too_long.json["field"]) == (400, "bio")


class DynamoCalls:
    """Every DynamoDB operation the app's models send."""

    def __init__(self) -> None:
        self.operations: list[str] = []

    def __call__(self, model: Any, **_: Any) -> None:
        self.operations.append(model.name)


@pytest.fixture
def dynamo_calls() -> Iterator[DynamoCalls]:
    calls = DynamoCalls()
    clients = {m._get_connection().connection.client for m in (PeopleIndexEntry, User)}
    for client in clients:
        client.meta.events.register("before-call.dynamodb", calls)
    yield calls
    for client in clients:
        client.meta.events.unregister("before-call.dynamodb", calls)


def _handles(reply: Any) -> list[str]:
    assert reply.status == 200, reply.json
    return [p["handle"] for p in reply.json["items"]]


def test_people_are_found_by_a_prefix_of_handle_or_name_without_a_scan(
    world: World, dynamo_calls: DynamoCalls
) -> None:
    dave = world.user("dave")
    for handle, name in (("alice", "Alice Ng"), ("alicia", "Alicia Keys"),
                         ("zoe", "Zoë Ruiz-Alvarez"), ("bob", "Bob Okafor")):
        assert world.caller(f"u-{handle}").put(
            "/me", {"handle": handle, "display_name": name}).status == 200
    dynamo_calls.operations.clear()
    assert _handles(dave.get("/users?q=ali")) == ["alice", "alicia"]
    assert "Scan" not in dynamo_calls.operations
    assert set(dynamo_calls.operations) <= {"Query", "BatchGetItem"}
    assert _handles(dave.get("/users?q=a")) == ["alice", "alicia", "zoe"]
    assert _handles(dave.get("/users?q=ALICIA")) == ["alicia"]
    assert _handles(dave.get("/users?q=@bob")) == ["bob"]
    assert _handles(dave.get("/users?q=zoe")) == ["zoe"]  # by handle and by name, once
    assert _handles(dave.get("/users?q=alv")) == ["zoe"]  # a word of the name, no accent
    assert _handles(dave.get("/users?q=ali%20ke")) == ["alicia"]  # every word must match
    assert _handles(dave.get("/users?q=a&limit=1")) == ["alice"]
    assert _handles(dave.get("/users?q=nobody")) == []


def test_the_search_follows_a_change_of_handle_or_name(world: World) -> None:
    dave = world.user("dave")
    carol = world.user("carol")
    carol.put("/me", {"handle": "carolina", "display_name": "Lina Park"})
    assert _handles(dave.get("/users?q=caroli")) == ["carolina"]
    assert _handles(dave.get("/users?q=lin")) == ["carolina"]
    carol.put("/me", {"handle": "cpark", "display_name": "C Park"})
    assert _handles(dave.get("/users?q=caroli")) == []
    assert _handles(dave.get("/users?q=lin")) == []
    assert _handles(dave.get("/users?q=cpa")) == ["cpark"]
    # Nothing left behind of the old names.
    assert {e.entry.split("#")[0] for e in PeopleIndexEntry.scan()} == {
        "dave", "cpark", "c", "park"}


@pytest.mark.parametrize("query", ["", "q=", "q=%40%40", "q=" + "a" * 51, "q=ab&limit=0",
                                   "q=ab&limit=26", "q=ab&limit=x"])
def test_a_bad_search_is_a_400(world: World, query: str) -> None:
    reply = world.user("dave").get(f"/users?{query}")
    assert reply.status == 400
    assert reply.json["field"] in {"q", "limit"}


def test_the_relationship_says_what_the_profile_buttons_show(world: World) -> None:
    alice, bob = world.user("alice"), world.user("bob")
    relation = bob.get("/users/u-alice/relationship").json
    assert relation == {"user_id": "u-alice", "following": False, "followed_by": False,
                        "blocked": False, "muted": False}
    bob.put("/users/u-alice/follow")
    alice.put("/users/u-bob/follow")
    bob.put("/me/muted/u-alice")
    relation = bob.get("/users/u-alice/relationship").json
    assert (relation["following"], relation["followed_by"], relation["muted"]) == \
        (True, True, True)
    bob.put("/me/blocks/u-alice")
    relation = bob.get("/users/u-alice/relationship").json
    # A block parts the two accounts.
    assert (relation["blocked"], relation["following"], relation["followed_by"]) == \
        (True, False, False)
    assert bob.get("/users/u-nobody/relationship").status == 404


def test_upcoming_spaces_of_followed_accounts_soonest_first(world: World) -> None:
    alice, carol = world.host("alice"), world.host("carol")
    world.host("erin")
    bob = world.user("bob")
    now = time.time()

    def schedule(host: Caller, title: str, hours: float) -> str:
        reply = host.post("/spaces", {"title": title, "scheduled_start": now + hours * 3600})
        assert reply.status == 201, reply.json
        return str(reply.json["space_id"])

    late = schedule(alice, "Late", 5)
    soon = schedule(carol, "Soon", 1)
    schedule(world.caller("u-erin"), "Not followed", 2)
    assert bob.get("/me/spaces/upcoming").json == {"items": []}
    bob.put("/users/u-alice/follow")
    bob.put("/users/u-carol/follow")
    items = bob.get("/me/spaces/upcoming").json["items"]
    assert [s["space_id"] for s in items] == [soon, late]
    assert items[0]["host"]["handle"] == "carol"
    bob.put("/me/muted/u-carol")
    assert [s["space_id"] for s in bob.get("/me/spaces/upcoming").json["items"]] == [late]
    alice.post(f"/spaces/{late}/start")
    assert bob.get("/me/spaces/upcoming").json["items"] == []


def test_the_reminder_status_of_a_space(world: World) -> None:
    alice, bob = world.host(), world.user("bob")
    space_id = alice.post("/spaces", {"title": "Later",
                                      "scheduled_start": time.time() + 3600}).json["space_id"]
    path = f"/spaces/{space_id}/reminder"
    assert bob.get(path).json == {"space_id": space_id, "reminder": False}
    bob.put(path)
    assert bob.get(path).json["reminder"] is True
    bob.delete(path)
    assert bob.get(path).json["reminder"] is False
    assert bob.get(f"/spaces/sp_{'0' * 20}/reminder").status == 404


# Avatars


@pytest.fixture
def bucket(aws: None) -> str:
    name = os.environ["AVATARS_BUCKET"]
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def _upload(user: Caller, content: bytes, content_type: str = "image/png") -> str:
    reply = user.post("/me/avatar", {"content_type": content_type})
    assert reply.status == 201, reply.json
    form = reply.json
    answer = requests.post(form["url"], data=form["fields"],
                           files={"file": ("avatar", io.BytesIO(content), content_type)},
                           timeout=10)
    assert answer.status_code in (200, 204), answer.text
    return str(form["key"])


def test_the_upload_policy_fixes_key_type_and_size(world: World, bucket: str) -> None:
    alice = world.user("alice")
    form = alice.post("/me/avatar", {"content_type": "image/webp"}).json
    assert form["key"].startswith("avatars/u-alice/")
    assert form["key"].endswith(".webp")
    assert form["max_bytes"] == avatars.MAX_BYTES
    policy = json.loads(base64.b64decode(form["fields"]["policy"]))
    conditions = policy["conditions"]
    assert {"key": form["key"]} in conditions
    assert {"Content-Type": "image/webp"} in conditions
    assert ["content-length-range", 1, avatars.MAX_BYTES] in conditions
    assert {"bucket": bucket} in conditions
    svg = alice.post("/me/avatar", {"content_type": "image/svg+xml"})
    assert (svg.status, svg.json["field"]) == (400, "content_type")


def test_an_uploaded_avatar_becomes_the_profiles_and_replaces_the_old(
    world: World, bucket: str
) -> None:
    alice, bob = world.user("alice"), world.user("bob")
    first = _upload(alice, PNG)
    profile = alice.put("/me/avatar", {"key": first}).json
    assert profile["avatar_url"] == f"/{first}"
    assert bob.get("/users/u-alice").json["avatar_url"] == f"/{first}"
    second = _upload(alice, PNG)
    alice.put("/me/avatar", {"key": second})
    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == [second]
    assert s3.head_object(Bucket=bucket, Key=second)["CacheControl"] == avatars.CACHE_CONTROL
    assert alice.delete("/me/avatar").json["avatar_url"] is None
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []


def test_what_is_not_an_avatar_is_refused_and_deleted(world: World, bucket: str) -> None:
    alice, bob = world.user("alice"), world.user("bob")
    html = _upload(alice, b"<script>alert(1)</script>")
    refused = alice.put("/me/avatar", {"key": html})
    assert (refused.status, refused.json["field"]) == (400, "key")
    assert boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", []) == []
    theirs = _upload(bob, PNG)
    assert alice.put("/me/avatar", {"key": theirs}).status == 400
    missing = alice.put("/me/avatar", {"key": "avatars/u-alice/0123456789abcdef.png"})
    assert (missing.status, missing.json["error"]) == (404, "upload_not_found")
    assert alice.get("/me").json["avatar_url"] is None


def test_without_a_bucket_avatars_are_unavailable(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = world.user("alice")
    monkeypatch.delenv("AVATARS_BUCKET")
    reply = alice.post("/me/avatar", {"content_type": "image/png"})
    assert (reply.status, reply.json["error"]) == (503, "avatars_unavailable")


def test_avatars_reach_the_stage_and_the_bar(world: World, bucket: str) -> None:
    alice = world.host()
    key = _upload(alice, PNG)
    alice.put("/me/avatar", {"key": key})
    space_id = world.live_space(alice)
    detail = alice.get(f"/spaces/{space_id}").json
    assert detail["host"]["avatar_url"] == detail["stage"][0]["avatar_url"] == f"/{key}"


def test_the_bar_says_who_of_the_follows_on_stage_is_speaking(
    world: World, alerts: Any
) -> None:
    from chalicelib.media.presence import SPEAKING_STARTED, SPEAKING_STOPPED, MediaEvent, apply

    alice, bob = world.host(), world.user("bob")
    bob.put("/users/u-alice/follow")
    space_id = alerts.start_live(alice)
    alerts.drain()

    def speaking() -> list[bool]:
        (item,) = bob.get("/me/timeline/spaces").json["items"]
        return [person["speaking"] for person in item["people"]]

    assert speaking() == [False]
    now = time.time()
    apply(MediaEvent(SPEAKING_STARTED, "node-a", now, space_id, "u-alice"))
    assert speaking() == [True]
    apply(MediaEvent(SPEAKING_STOPPED, "node-a", now + 1, space_id, "u-alice"))
    assert speaking() == [False]
