"""A Web Push service (RFC 8030) on this machine, for the tests: what FCM or Mozilla's
autopush is to a browser, without the internet.

It hands out subscriptions as a browser's PushManager would (a P-256 key pair and an
auth secret per subscription, kept here as the browser keeps them), and for every push
it checks what a real push service checks, and what the browser would: the VAPID
header (RFC 8292: an ES256 JWT for this origin, not expired, with a subject, signed by
the key the subscription was made with), a TTL, the aes128gcm content encoding; then it
decrypts the payload with the subscription's keys (RFC 8291) through http_ece. A
subscription can be made to answer 410 Gone, as one the browser dropped."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from local.web import WebServer
from tests.localrun import free_port


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Subscription:
    id: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    application_server_key: str
    gone: bool = False

    def public(self) -> str:
        return b64url(self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))


@dataclass
class Message:
    subscription_id: str
    payload: dict[str, Any]
    ttl: int
    urgency: str | None
    claims: dict[str, Any]


@dataclass
class Refusal:
    subscription_id: str
    reason: str


@dataclass
class PushService:
    messages: list[Message] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        app = web.Application()
        app.router.add_post("/push/{id}", self._push)
        self._server = WebServer(app, "127.0.0.1", self.port)
        self._stopped = False

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PushService:
        self._server.start()
        return self

    def stop(self) -> None:
        """Stops answering (as a push service that is down); safe to call twice."""
        if not self._stopped:
            self._stopped = True
            self._server.stop()

    def subscribe(self, application_server_key: str) -> dict[str, Any]:
        """A new subscription, as `JSON.stringify(pushSubscription)` gives it."""
        subscription = Subscription(secrets.token_hex(8), ec.generate_private_key(ec.SECP256R1()),
                                    secrets.token_bytes(16), application_server_key)
        self.subscriptions[subscription.id] = subscription
        return {"endpoint": f"{self.origin}/push/{subscription.id}", "expirationTime": None,
                "keys": {"p256dh": subscription.public(), "auth": b64url(subscription.auth)}}

    def forget(self, endpoint: str) -> None:
        """The browser dropped the subscription: pushes to it get 410 Gone."""
        self.subscriptions[endpoint.rsplit("/", 1)[-1]].gone = True

    def to(self, endpoint: str) -> list[Message]:
        return [m for m in self.messages if m.subscription_id == endpoint.rsplit("/", 1)[-1]]

    def wait_for(self, endpoint: str, count: int = 1, timeout: float = 20) -> list[Message]:
        deadline = time.time() + timeout
        while len(self.to(endpoint)) < count:
            assert time.time() < deadline, (self.messages, self.refusals)
            time.sleep(0.1)
        return self.to(endpoint)

    def _refuse(self, subscription_id: str, status: int, reason: str) -> web.Response:
        with self._lock:
            self.refusals.append(Refusal(subscription_id, reason))
        return web.Response(status=status, text=reason)

    def _claims(self, request: web.Request, subscription: Subscription) -> dict[str, Any]:
        scheme, _, params = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "vapid":
            raise ValueError("no VAPID authorization")
        fields = dict(part.strip().split("=", 1) for part in params.split(","))
        if fields.get("k") != subscription.application_server_key:
            raise ValueError("signed by another key than the subscription's")
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(fields["k"]))
        claims: dict[str, Any] = jwt.decode(fields["t"], key, algorithms=["ES256"],
                                            audience=self.origin,
                                            options={"require": ["exp", "aud", "sub"]})
        if claims["exp"] > time.time() + 24 * 3600:
            raise ValueError("a VAPID token lives at most 24 hours")
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            raise ValueError("the subject is not a mailto: or https: URL")
        return claims

    async def _push(self, request: web.Request) -> web.Response:
        subscription_id = request.match_info["id"]
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None or subscription.gone:
            return self._refuse(subscription_id, 410, "no such subscription")
        try:
            claims = self._claims(request, subscription)
        except (ValueError, KeyError, jwt.InvalidTokenError) as exc:
            return self._refuse(subscription_id, 403, f"VAPID: {exc}")
        if request.headers.get("Content-Encoding") != "aes128gcm":
            return self._refuse(subscription_id, 415, "the payload is not aes128gcm")
        if "TTL" not in request.headers:
            return self._refuse(subscription_id, 400, "no TTL")
        try:
            plain = http_ece.decrypt(await request.read(), private_key=subscription.private_key,
                                     auth_secret=subscription.auth, version="aes128gcm")
        except Exception as exc:
            return self._refuse(subscription_id, 400, f"does not decrypt: {exc}")
        with self._lock:
            self.messages.append(Message(subscription_id, json.loads(plain),
                                         int(request.headers["TTL"]),
                                         request.headers.get("Urgency"), claims))
        return web.Response(status=201, headers={
            "Location": f"{self.origin}/message/{secrets.token_hex(8)}"})
