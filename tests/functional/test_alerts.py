"""Alerts: the bar, pushes and live updates, driven through the stream, fan-out and
delivery handlers with events in the shapes AWS delivers."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from chalicelib.platform.models import AlertSettings, Member, TimelineEntry
from tests.events import sqs_event
from tests.functional.alerting import Pipeline
from tests.functional.conftest import Caller, World


def _followers(world: World, target: Caller, *handles: str) -> list[Caller]:
    users = []
    for handle in handles:
        user = world.user(handle)
        assert user.put(f"/users/{target.user_id}/follow").status == 200
        users.append(user)
    return users


def _on_stage(world: World, alerts: Pipeline, host: Caller, space_id: str,
              speaker: Caller) -> None:
    """`speaker` joins, is approved, and connects to the media node."""
    speaker.post(f"/spaces/{space_id}/join")
    speaker.post(f"/spaces/{space_id}/requests")
    host.post(f"/spaces/{space_id}/requests/{speaker.user_id}/approve")
    event = json.dumps({"v": 1, "type": "participant_connected", "node_id": "node-a",
                        "space_id": space_id, "user_id": speaker.user_id, "role": "speaker",
                        "at": time.time()})
    alerts.change(space_id, lambda: world.client.lambda_.invoke(
        "handle_media_events", sqs_event(event)))


@pytest.fixture
def alice(world: World) -> Caller:
    world.node("node-a")
    return world.host("alice")


def test_starting_a_space_alerts_every_follower_once(
    world: World, alerts: Pipeline, alice: Caller
) -> None:
    bob, carol, dave = _followers(world, alice, "bob", "carol", "dave")
    alerts.device(bob, "fcm")
    alerts.device(carol, "apns")
    alerts.device(carol, "fcm")
    space_id = alerts.start_live(alice)
    alerts.drain()
    assert alerts.failures == []
    assert alerts.pushes(bob) == ["@alice is hosting a Space: Morning chat"]
    assert alerts.pushes(carol) == ["@alice is hosting a Space: Morning chat"] * 2
    for user in (bob, carol, dave):
        assert alerts.bar(user) == [(space_id, [alice.user_id])]
    assert alerts.bar(alice) == []
    item = bob.get("/me/timeline/spaces").json["items"][0]
    assert item["people"][0]["role"] == "host"
    assert item["space"]["title"] == "Morning chat"



def test_becoming_a_speaker_alerts_the_speakers_followers_but_not_the_host(
    world: World, alerts: Pipeline, alice: Caller
) -> None:
    bob = world.user("bob")
    erin, = _followers(world, bob, "erin")
    assert alice.put(f"/users/{bob.user_id}/follow").status == 200
    alerts.device(erin)
    alerts.device(alice)
    space_id = alerts.start_live(alice)
    _on_stage(world, alerts, alice, space_id, bob)
    alerts.drain()
    assert alerts.pushes(erin) == ["@bob is speaking in a Space: Morning chat"]
    assert alerts.pushes(alice) == []
    assert alerts.bar(erin) == [(space_id, [bob.user_id])]
    assert erin.get("/me/timeline/spaces").json["items"][0]["people"][0]["role"] == "speaker"
    # Their own Space stays out of the host's bar, though they follow the speaker.
    assert alerts.bar(alice) == []


def test_the_bar_puts_more_followed_people_first_then_more_listeners(
    world: World, alerts: Pipeline, alice: Caller
) -> None:
    zed = world.host("zed")
    bob = world.user("bob")
    fan = world.user("fan")
    for target in (alice, zed, bob):
        fan.put(f"/users/{target.user_id}/follow")
    quiet = alerts.start_live(alice, "Quiet")
    busy = alerts.start_live(zed, "Busy")
    world.user("l1").post(f"/spaces/{busy}/join")
    assert [s for s, _ in alerts.bar(fan)] == []  # nothing is delivered yet
    alerts.drain()
    assert [s for s, _ in alerts.bar(fan)] == [busy, quiet]
    _on_stage(world, alerts, alice, quiet, bob)
    alerts.drain()
    assert alerts.bar(fan) == [(quiet, sorted([alice.user_id, bob.user_id])), (busy, [zed.user_id])]
    # Someone who leaves the stage leaves the bar with it.
    alerts.change(quiet, lambda: alice.post(f"/spaces/{quiet}/members/{bob.user_id}/demote"))
    assert alerts.bar(fan) == [(busy, [zed.user_id]), (quiet, [alice.user_id])]


def test_muted_and_blocked_accounts_send_nothing(
    world: World, alerts: Pipeline, alice: Caller
) -> None:
    bob = world.user("bob")
    frank, gina, henry, ivan = _followers(world, alice, "frank", "gina", "henry", "ivan")
    for user in (frank, gina, henry, ivan):
        user.put(f"/users/{bob.user_id}/follow")
        alerts.device(user)
    assert frank.put(f"/me/muted/{alice.user_id}").json["muted"] is True
    assert gina.put(f"/me/blocks/{alice.user_id}").json["blocked"] is True
    assert henry.put(f"/me/muted/{bob.user_id}").status == 200
    space_id = alerts.start_live(alice)
    _on_stage(world, alerts, alice, space_id, bob)
    alerts.drain()
    # Frank and Gina hear nothing about Alice's Space, not even through Bob.
    assert alerts.pushes(frank) == alerts.pushes(gina) == []
    assert alerts.entries(frank) == alerts.entries(gina) == []
    assert alerts.pushes(henry) == ["@alice is hosting a Space: Morning chat"]
    assert alerts.bar(henry) == [(space_id, [alice.user_id])]
    assert len(alerts.pushes(ivan)) == 2
    # Muting after the alert takes the Space out of the bar at once.
    ivan.put(f"/me/muted/{alice.user_id}")
    assert alerts.bar(ivan) == []
    assert [p["user_id"] for p in ivan.get("/me/muted").json["items"]] == [alice.user_id]
    ivan.delete(f"/me/muted/{alice.user_id}")
    assert alerts.bar(ivan) == [(space_id, sorted([alice.user_id, bob.user_id]))]
    assert gina.get("/me/blocks").json["items"][0]["user_id"] == alice.user_id
    assert gina.delete(f"/me/blocks/{alice.user_id}").json["blocked"] is False


def test_the_bar_empties_when_the_space_ends(
    world: World, alerts: Pipeline, alice: Caller
) -> None:
    bob = world.user("bob")
    kim, = _followers(world, alice, "kim")
    kim.put(f"/users/{bob.user_id}/follow")
    space_id = alerts.start_live(alice)
    _on_stage(world, alerts, alice, space_id, bob)
    alerts.drain()
    assert alerts.bar(kim) == [(space_id, sorted([alice.user_id, bob.user_id]))]
    alerts.change(space_id, lambda: alice.post(f"/spaces/{space_id}/end"))
    # At once, before any clean-up ran...
    assert alerts.bar(kim) == []
    alerts.drain()
    # ...and the entries are gone afterwards.
    assert alerts.entries(kim) == []
    assert alerts.failures == []


def test_a_page_delivered_twice_alerts_nobody_twice(
    world: World, alerts: Pipeline, alice: Caller
) -> None:
    followers = _followers(world, alice, "bob", "carol")
    for user in followers:
        alerts.device(user)
    alerts.start_live(alice)
    pages = alerts.receive("fanout")
    assert len(pages) == 1
    # The fan-out page itself runs twice: it sends its delivery page twice.
    assert alerts.handle("fanout", pages[0]["Body"]) == []
    assert alerts.handle("fanout", pages[0]["Body"]) == []
    deliveries = [m["Body"] for m in alerts.receive("delivery")]
    assert len(deliveries) == 2
    assert deliveries[0] == deliveries[1]
    for body in deliveries + deliveries:
        assert alerts.handle("delivery", body) == []
    for user in followers:
        assert alerts.pushes(user) == ["@alice is hosting a Space: Morning chat"]
        assert len(alerts.entries(user)) == 1


def test_poison_records_fail_alone(world: World, alerts: Pipeline, alice: Caller) -> None:
    bob, = _followers(world, alice, "bob")
    alerts.device(bob)
    space_id = alerts.start_live(alice)
    good_page = alerts.receive("fanout")[0]["Body"]
    assert alerts.handle("fanout", "not json", json.dumps({"v": 9}), good_page) == [
        "not json", json.dumps({"v": 9})]
    good_delivery = alerts.receive("delivery")[0]["Body"]
    broken = json.loads(good_delivery)
    broken["users"] = "u-bob"
    assert alerts.handle("delivery", json.dumps(broken), good_delivery) == [json.dumps(broken)]
    assert alerts.pushes(bob) == ["@alice is hosting a Space: Morning chat"]
    # A stream record the handler cannot read is reported by its sequence number.
    image = alerts.image(space_id)
    assert image is not None
    bad = {**image, "state": {"S": "live"}}
    del bad["host_id"]
    ended = {**image, "state": {"S": "ended"}}
    event_result = alerts.stream(({**image, "state": {"S": "scheduled"}}, bad), (image, ended))
    assert len(event_result["batchItemFailures"]) == 1


def test_a_disabled_endpoint_is_removed(world: World, alerts: Pipeline, alice: Caller) -> None:
    bob, = _followers(world, alice, "bob")
    dead = alerts.device(bob, "fcm", "old-phone")
    alive = alerts.device(bob, "apns", "new-phone")
    (endpoint,) = [e for e in alerts.endpoints().values() if e.token == "old-phone"]
    boto3.client("sns").set_endpoint_attributes(EndpointArn=endpoint.arn,
                                                Attributes={"Enabled": "false"})
    alerts.start_live(alice)
    alerts.drain()
    assert alerts.failures == []
    assert alerts.pushes(bob) == ["@alice is hosting a Space: Morning chat"]
    assert [d["device_id"] for d in bob.get("/me/devices").json["items"]] == [alive]
    assert endpoint.arn not in alerts.endpoints()
    assert dead != alive


def test_push_off_keeps_the_bar(world: World, alerts: Pipeline, alice: Caller) -> None:
    bob, = _followers(world, alice, "bob")
    alerts.device(bob)
    assert bob.get("/me/alert-settings").json == {"push_enabled": True}
    assert bob.put("/me/alert-settings", {"push_enabled": False}).json == {
        "push_enabled": False}
    space_id = alerts.start_live(alice)
    alerts.drain()
    assert alerts.pushes(bob) == []
    assert alerts.bar(bob) == [(space_id, [alice.user_id])]


def test_reminders_reach_non_followers_and_followers_once(
    world: World, alerts: Pipeline, alice: Caller
) -> None:
    bob, = _followers(world, alice, "bob")
    kim = world.user("kim")
    for user in (bob, kim):
        alerts.device(user)
    reply = alice.post("/spaces", {"title": "Later", "scheduled_start": time.time() + 3600})
    space_id = reply.json["space_id"]
    for user in (bob, kim):
        assert user.put(f"/spaces/{space_id}/reminder").json == {
            "space_id": space_id, "reminder": True}
    alerts.stream((None, alerts.image(space_id)))
    alerts.drain()
    assert alerts.pushes(kim) == []  # scheduled is not live
    alerts.change(space_id, lambda: alice.post(f"/spaces/{space_id}/start"))
    alerts.drain()
    assert alerts.pushes(bob) == alerts.pushes(kim) == ["@alice is hosting a Space: Later"]
    assert alerts.bar(kim) == [(space_id, [alice.user_id])]
    # Once live, its reminders stay as they are.
    assert kim.delete(f"/spaces/{space_id}/reminder").json["error"] == "space_not_scheduled"
    assert kim.put(f"/spaces/{space_id}/reminder").json["error"] == "space_not_scheduled"
    alerts.change(space_id, lambda: alice.post(f"/spaces/{space_id}/end"))
    alerts.drain()
    assert alerts.entries(kim) == alerts.entries(bob) == []


def test_a_failed_push_is_retried_alone(
    world: World, alerts: Pipeline, alice: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.alerts import devices

    bob, carol = _followers(world, alice, "bob", "carol")
    alerts.device(bob)
    alerts.device(carol)
    real_push = devices.push
    flaky = {"left": 1}

    def push(endpoint: str, text: str, data: dict[str, object]) -> None:
        if "carol" in str(alerts.endpoints()[endpoint].custom_user_data) and flaky["left"]:
            flaky["left"] -= 1
            raise ConnectionError("SNS is unreachable")
        real_push(endpoint, text, data)

    monkeypatch.setattr(devices, "push", push)
    alerts.start_live(alice)
    alerts.drain()
    assert len(alerts.failures) == 1
    assert alerts.pushes(carol) == []
    # SQS brings the record back; only Carol's device is owed a push.
    assert alerts.handle("delivery", alerts.failures[0]) == []
    assert alerts.pushes(carol) == alerts.pushes(bob) == ["@alice is hosting a Space: Morning chat"]
    assert alerts.handle("delivery", alerts.failures[0]) == []
    assert len(alerts.pushes(carol)) == 1


def test_a_page_held_by_a_live_delivery_is_left_for_later(
    world: World, alerts: Pipeline, alice: Caller
) -> None:
    from chalicelib.platform.models import AlertLog

    bob, = _followers(world, alice, "bob")
    alerts.device(bob)
    space_id = alerts.start_live(alice)
    alerts.handle("fanout", alerts.receive("fanout")[0]["Body"])
    body = alerts.receive("delivery")[0]["Body"]
    page = json.loads(body)["page"]
    key = f"page#{alice.user_id}#followers#{page}"
    AlertLog(space_id, key, status="working", lease_until=time.time() + 60,
             expires_at=int(time.time()) + 60).save()
    assert alerts.handle("delivery", body) == [body]
    assert alerts.pushes(bob) == []
    # Its holder died: the lease runs out, the bar is written, no push is risked twice.
    AlertLog(space_id, key).update(actions=[AlertLog.lease_until.set(time.time() - 1)])
    assert alerts.handle("delivery", body) == []
    assert alerts.pushes(bob) == []
    assert alerts.bar(bob) == [(space_id, [alice.user_id])]


def test_live_updates_reach_open_connections(
    world: World, alerts: Pipeline, alice: Caller
) -> None:
    from tests.events import websocket_event

    bob, = _followers(world, alice, "bob")
    refused = world.client.lambda_.invoke(
        "ws_connect", websocket_event("$connect", "conn-x", {"token": "nope"})).payload
    assert refused["statusCode"] == 401
    accepted = world.client.lambda_.invoke(
        "ws_connect", websocket_event("$connect", "conn-1", {"token": bob.token or ""}))
    assert accepted.payload["statusCode"] == 200
    space_id = alerts.start_live(alice)
    alerts.drain()
    assert alerts.posts("conn-1") == [{"type": "timeline", "event": "added",
                                       "space_id": space_id, "person_id": alice.user_id}]
    world.client.lambda_.invoke("ws_disconnect", websocket_event("$disconnect", "conn-1"))
    assert AlertSettings.get(bob.user_id).connections is None


def test_a_gone_connection_is_forgotten(
    world: World, alerts: Pipeline, alice: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.stub import Stubber

    from app import app
    from tests.events import websocket_event

    bob, = _followers(world, alice, "bob")
    world.client.lambda_.invoke(
        "ws_connect", websocket_event("$connect", "conn-gone", {"token": bob.token or ""}))
    client = boto3.client("apigatewaymanagementapi",
                          endpoint_url="https://abcdef1234.execute-api.us-east-1.amazonaws.com/api")
    stub = Stubber(client)
    stub.add_client_error("post_to_connection", service_error_code="GoneException",
                          http_status_code=410)
    monkeypatch.setattr(app.websocket_api, "_client", client)
    with stub:
        alerts.start_live(alice)
        alerts.drain()
    assert alerts.failures == []
    assert AlertSettings.get(bob.user_id).connections is None


def test_device_and_preference_errors_keep_the_error_shape(
    world: World, alerts: Pipeline, alice: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.platform.config import settings

    bob = world.user("bob")
    assert bob.post("/me/devices", {"platform": "sms", "token": "x"}).json["field"] == "platform"
    assert bob.post("/me/devices", {"platform": "fcm"}).json["field"] == "token"
    assert bob.delete("/me/devices/dev_" + "0" * 24).status == 404
    assert bob.delete("/me/devices/nope").status == 400
    assert bob.put(f"/me/blocks/{bob.user_id}").json["error"] == "invalid_field"
    assert bob.put("/me/muted/u-nobody").status == 404
    assert bob.put("/me/alert-settings", {}).json["field"] == "push_enabled"
    device = alerts.device(bob)
    assert alerts.device(bob) == device  # the same token is the same device
    for n in range(9):
        alerts.device(bob, token=f"t{n}")
    assert bob.post("/me/devices", {"platform": "fcm", "token": "eleventh"}).json["error"] == \
        "device_limit"
    assert len(bob.delete(f"/me/devices/{device}").json["items"]) == 9
    monkeypatch.delenv("APNS_APPLICATION_ARN")
    settings.cache_clear()
    reply = bob.post("/me/devices", {"platform": "apns", "token": "y"})
    assert (reply.status, reply.json["error"]) == (503, "push_unavailable")


def test_the_stage_role_of_a_co_host_is_shown(
    world: World, alerts: Pipeline, alice: Caller
) -> None:
    bob = world.user("bob")
    fan, = _followers(world, bob, "fan")
    space_id = alerts.start_live(alice)
    _on_stage(world, alerts, alice, space_id, bob)
    alerts.change(space_id, lambda: alice.post(f"/spaces/{space_id}/co-hosts",
                                               {"user_id": bob.user_id}))
    alerts.drain()
    assert Member.get(space_id, bob.user_id).role == "co_host"
    people = fan.get("/me/timeline/spaces").json["items"][0]["people"]
    assert [(p["user_id"], p["role"]) for p in people] == [(bob.user_id, "co_host")]
    assert len(list(TimelineEntry.query(fan.user_id))) == 1
