"""Web Push end to end in one process: a browser's subscription registered as a device
of platform `web`, the alert delivery sending through pywebpush to a push service of the
tests (tests/pushservice.py), which checks the VAPID JWT and decrypts the payload with
the subscription's keys, and subscriptions the push service calls gone removed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from chalicelib.alerts import webpush
from tests.functional.alerting import Pipeline
from tests.functional.conftest import Caller, World
from tests.pushservice import PushService


@pytest.fixture
def push_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[PushService]:
    service = PushService().start()
    # The push service of the tests is on this machine: loopback, over plain HTTP.
    monkeypatch.setenv("WEB_PUSH_HOSTS", "127.0.0.1")
    try:
        yield service
    finally:
        service.stop()


def _subscribe(service: PushService, user: Caller) -> dict[str, Any]:
    key = user.get("/web-push/key")
    assert key.status == 200, key.json
    subscription = service.subscribe(key.json["public_key"])
    reply = user.post("/me/devices", {"platform": "web", "token": json.dumps(subscription)})
    assert reply.status == 201, reply.json
    assert reply.json["platform"] == "web"
    return subscription


def test_a_followers_browser_gets_an_encrypted_signed_notification(
    world: World, alerts: Pipeline, push_service: PushService
) -> None:
    alice = world.host()
    bob = world.user("bob")
    assert bob.put("/users/u-alice/follow").status == 200
    subscription = _subscribe(push_service, bob)
    # Registering the same subscription again (any key order) is the same device.
    again = bob.post("/me/devices", {"platform": "web", "token": json.dumps(
        {"keys": subscription["keys"], "endpoint": subscription["endpoint"]})})
    assert again.status == 201
    assert len(bob.get("/me/devices").json["items"]) == 1

    space_id = alerts.start_live(alice, "Web push chat")
    alerts.drain()
    assert alerts.failures == []
    (message,) = push_service.wait_for(subscription["endpoint"])
    assert message.payload == {"title": "Parlor",
                               "body": "@alice is hosting a Space: Web push chat",
                               "space_id": space_id, "person_id": "u-alice",
                               "url": f"/spaces/{space_id}"}
    assert message.claims["aud"] == push_service.origin
    assert message.claims["sub"].startswith("mailto:")
    assert message.ttl == webpush.TTL_SECONDS
    assert message.urgency == "high"
    assert push_service.refusals == []


def test_a_subscription_the_push_service_calls_gone_is_removed(
    world: World, alerts: Pipeline, push_service: PushService
) -> None:
    alice = world.host()
    bob = world.user("bob")
    bob.put("/users/u-alice/follow")
    kept = _subscribe(push_service, bob)
    dropped = _subscribe(push_service, bob)
    push_service.forget(dropped["endpoint"])
    assert len(bob.get("/me/devices").json["items"]) == 2

    alerts.start_live(alice)
    alerts.drain()
    assert alerts.failures == []
    push_service.wait_for(kept["endpoint"])
    assert [r.reason for r in push_service.refusals] == ["no such subscription"]
    (left,) = bob.get("/me/devices").json["items"]
    assert left["platform"] == "web"


def test_a_push_service_that_fails_is_retried(
    world: World, alerts: Pipeline, push_service: PushService
) -> None:
    """A 5xx or a refused connection is the network's, not the subscription's: the
    device stays and the page is retried (as for SNS, test_alerts.py)."""
    alice = world.host()
    bob = world.user("bob")
    bob.put("/users/u-alice/follow")
    subscription = _subscribe(push_service, bob)
    push_service.stop()
    alerts.start_live(alice)
    alerts.drain()
    assert len(alerts.failures) == 1  # the delivery page, reported for a retry
    assert len(bob.get("/me/devices").json["items"]) == 1
    assert push_service.to(subscription["endpoint"]) == []


@pytest.mark.parametrize(("token", "why"), [
    ("not json", "PushSubscription JSON"),
    (json.dumps({"endpoint": "https://fcm.googleapis.com/fcm/send/x"}), "endpoint and keys"),
    (json.dumps({"endpoint": "https://evil.example/push/1", "keys": {}}), "push service"),
    (json.dumps({"endpoint": "http://fcm.googleapis.com/fcm/send/x", "keys": {}}),
     "push service"),
    (json.dumps({"endpoint": "https://fcm.googleapis.com/x",
                 "keys": {"p256dh": "AAAA", "auth": "AAAA"}}), "P-256"),
    (json.dumps({"endpoint": "https://fcm.googleapis.com/x",
                 "keys": {"p256dh": 5, "auth": None}}), "base64url"),
])
def test_a_subscription_that_is_not_one_is_refused(world: World, token: str, why: str) -> None:
    bob = world.user("bob")
    reply = bob.post("/me/devices", {"platform": "web", "token": token})
    assert (reply.status, reply.json["field"]) == (400, "token")
    assert why in reply.json["message"]


def test_without_vapid_keys_web_push_is_unavailable(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    bob = world.user("bob")
    monkeypatch.delenv("WEB_PUSH_VAPID_PRIVATE_KEY")
    webpush.keys.cache_clear()
    try:
        for reply in (bob.get("/web-push/key"),
                      bob.post("/me/devices", {"platform": "web", "token": "{}"})):
            assert (reply.status, reply.json["error"]) == (503, "push_unavailable")
    finally:
        monkeypatch.undo()
        webpush.keys.cache_clear()


def test_the_key_provisioner_makes_and_rotates_the_vapid_pair(world: World) -> None:
    secrets = boto3.client("secretsmanager")
    arn = secrets.create_secret(Name="parlor-vapid", SecretString="placeholder")["ARN"]

    def provision(kind: str, generation: str, old: str | None = None,
                  subject: str = "https://parlor.example") -> dict[str, Any]:
        event: dict[str, Any] = {
            "RequestType": "Create" if old is None else "Update",
            "ResourceProperties": {"Keys": kind, "SecretArn": arn, "Generation": generation,
                                   "Subject": subject}}
        if old is not None:
            event["PhysicalResourceId"] = "vapid-keys-1"
            event["OldResourceProperties"] = {"Generation": old}
        result: dict[str, Any] = world.client.lambda_.invoke(
            "provision_join_token_keys", event).payload
        return result

    def stored() -> dict[str, str]:
        value: dict[str, str] = json.loads(secrets.get_secret_value(SecretId=arn)["SecretString"])
        return value

    made = provision("vapid", "1")
    first = stored()
    assert made["Data"]["PublicKey"] == first["public_key"]
    assert webpush.public_key_of(first["private_key"]) == first["public_key"]
    assert first["subject"] == "https://parlor.example"
    provision("vapid", "1", old="1")
    assert stored() == first
    # A new subject alone keeps the pair (subscribed browsers keep working).
    provision("vapid", "1", old="1", subject="mailto:ops@parlor.example")
    assert stored() == {**first, "subject": "mailto:ops@parlor.example"}
    provision("vapid", "2", old="1")
    assert stored()["public_key"] != first["public_key"]
