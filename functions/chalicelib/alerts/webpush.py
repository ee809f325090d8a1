"""Web Push to browsers (RFC 8030), through pywebpush: VAPID (RFC 8292) names this
deployment to the push services, and each payload is encrypted for its subscription
(RFC 8291, aes128gcm). A browser's PushSubscription is registered as a device of
platform `web` (devices.py); the alert delivery sends through here, and a subscription
the push service answers 404 or 410 for is gone for good, so the delivery removes it.

The VAPID key pair is made at deploy time by the key provisioner (cdk/browser.py) and
kept in Secrets Manager (`WEB_PUSH_SECRET_ARN`, JSON with `private_key`, `public_key` and
the VAPID `subject`); locally it is `WEB_PUSH_VAPID_PRIVATE_KEY` (local/keys.py), and
`WEB_PUSH_SUBJECT` sets the subject. Endpoints
are only the push services' (`WEB_PUSH_HOSTS`, host suffixes): a subscription is a URL
the delivery will POST to, and must not point it anywhere else."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import boto3
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid
from pywebpush import WebPushException, webpush

from ..platform.errors import InvalidField, Unavailable

KEYS_KIND = "vapid"
# Push services of the browsers people use (Chrome and Edge's FCM, Firefox's autopush,
# Windows' WNS, Safari's APNs web push).
DEFAULT_HOSTS = ("fcm.googleapis.com", "push.services.mozilla.com", "notify.windows.com",
                 "push.apple.com")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
ENDPOINT_MAX = 2048
# A notification about a live Space is stale after a few minutes.
TTL_SECONDS = 300
TIMEOUT_SECONDS = 10
DEFAULT_SUBJECT = "mailto:parlor@localhost"


class SubscriptionGone(Exception):
    """The push service says the subscription no longer exists (404 or 410)."""


@dataclass(frozen=True)
class VapidKeys:
    private_pem: str
    public_key: str  # the applicationServerKey: base64url of the uncompressed P-256 point
    subject: str = DEFAULT_SUBJECT  # mailto: or https: of who sends


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key_of(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("a VAPID key is a P-256 key")
    return _b64url(key.public_key().public_bytes(serialization.Encoding.X962,
                                                 serialization.PublicFormat.UncompressedPoint))


def new_key_pair() -> VapidKeys:
    vapid = Vapid()
    vapid.generate_keys()
    pem = vapid.private_pem().decode()
    return VapidKeys(pem, public_key_of(pem))


@cache
def keys() -> VapidKeys | None:
    pem = os.environ.get("WEB_PUSH_VAPID_PRIVATE_KEY")
    arn = os.environ.get("WEB_PUSH_SECRET_ARN")
    subject = DEFAULT_SUBJECT
    if not pem and arn:
        secret = json.loads(boto3.client("secretsmanager").get_secret_value(
            SecretId=arn)["SecretString"])
        pem, subject = secret["private_key"], secret.get("subject") or DEFAULT_SUBJECT
    if not pem:
        return None
    return VapidKeys(pem, public_key_of(pem), os.environ.get("WEB_PUSH_SUBJECT") or subject)


def require_keys() -> VapidKeys:
    found = keys()
    if found is None:
        raise Unavailable("Web push notifications are not set up in this deployment",
                          code="push_unavailable")
    return found


@cache
def _vapid() -> Vapid:
    return Vapid.from_pem(require_keys().private_pem.encode())


def _hosts() -> tuple[str, ...]:
    raw = os.environ.get("WEB_PUSH_HOSTS")
    return tuple(h.strip().lower() for h in raw.split(",") if h.strip()) if raw else DEFAULT_HOSTS


def _allowed(host: str) -> bool:
    return any(host == h or host.endswith("." + h) for h in _hosts())


def _private_address(host: str) -> bool:
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False


def subscription(token: str) -> str:
    """The PushSubscription JSON a browser gave (`JSON.stringify(subscription)`), checked
    and in one canonical form (so the same subscription is the same device)."""
    try:
        raw = json.loads(token)
    except ValueError as exc:
        raise InvalidField("token", "A web device's token is its PushSubscription JSON") from exc
    keys_ = raw.get("keys") if isinstance(raw, dict) else None
    endpoint = raw.get("endpoint") if isinstance(raw, dict) else None
    if not isinstance(endpoint, str) or not isinstance(keys_, dict) or \
            len(endpoint) > ENDPOINT_MAX:
        raise InvalidField("token", "The subscription needs an endpoint and keys")
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    secure = parts.scheme == "https" or (parts.scheme == "http" and host in LOOPBACK)
    if not secure or not _allowed(host) or (_private_address(host) and host not in LOOPBACK):
        raise InvalidField("token", "The subscription's endpoint is not a known push service")
    try:
        p256dh, auth = _unb64url(keys_["p256dh"]), _unb64url(keys_["auth"])
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise InvalidField("token", "The subscription's keys are not base64url") from exc
    if len(p256dh) != 65 or p256dh[0] != 4 or len(auth) != 16:
        raise InvalidField("token", "The subscription's keys are not a P-256 key and a secret")
    return json.dumps({"endpoint": endpoint,
                       "keys": {"p256dh": keys_["p256dh"], "auth": keys_["auth"]}},
                      sort_keys=True, separators=(",", ":"))


def payload(text: str, data: dict[str, Any]) -> str:
    """What the service worker (web/sw.js) shows: a title, the alert, where a click goes."""
    space_id = data.get("space_id")
    return json.dumps({"title": "Parlor", "body": text, **data,
                       "url": f"/spaces/{space_id}" if space_id else "/"})


def push(subscription_json: str, text: str, data: dict[str, Any]) -> None:
    """One encrypted notification; raises SubscriptionGone for a dead subscription."""
    try:
        webpush(json.loads(subscription_json), payload(text, data),
                vapid_private_key=_vapid(),
                vapid_claims={"sub": require_keys().subject},
                content_encoding="aes128gcm", ttl=TTL_SECONDS, timeout=TIMEOUT_SECONDS,
                headers={"Urgency": "high"})
    except WebPushException as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (404, 410):
            raise SubscriptionGone(str(exc)) from exc
        raise


def provision_key_pair(event: dict[str, Any], secrets: Any = None) -> dict[str, Any]:
    """The custom resource that makes the VAPID key pair at deploy time (as jointoken's
    does the join-token pair): never in a template, a new pair when `Generation`
    changes (browsers subscribed with the old public key must subscribe again); a new
    `Subject` alone keeps the pair."""
    client = secrets or boto3.client("secretsmanager")
    properties = event["ResourceProperties"]
    secret_arn = properties["SecretArn"]
    subject = properties.get("Subject") or DEFAULT_SUBJECT
    physical_id = event.get("PhysicalResourceId") or f"vapid-keys-{uuid.uuid4().hex}"
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": physical_id}
    old = event.get("OldResourceProperties") or {}
    if event["RequestType"] == "Update" and old.get("Generation") == properties.get("Generation"):
        kept = json.loads(client.get_secret_value(SecretId=secret_arn)["SecretString"])
        if kept.get("subject") != subject:
            client.put_secret_value(SecretId=secret_arn,
                                    SecretString=json.dumps({**kept, "subject": subject}))
        return {"PhysicalResourceId": physical_id, "Data": {"PublicKey": kept["public_key"]}}
    pair = new_key_pair()
    client.put_secret_value(SecretId=secret_arn, SecretString=json.dumps(
        {"private_key": pair.private_pem, "public_key": pair.public_key, "subject": subject}))
    return {"PhysicalResourceId": physical_id, "Data": {"PublicKey": pair.public_key}}
