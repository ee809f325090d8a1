"""TURN credentials minted per join (the TURN REST API scheme that coturn's
`use-auth-secret` checks): the username is `<expiry epoch>:<user id>` and the password
is base64(HMAC-SHA1(shared secret, username)). No TURN password is ever configured in
a client; what one join hands out stops working TURN_CREDENTIAL_TTL_SECONDS later.

Clients behind networks that block UDP to the media nodes reach them through the TURN
server (aiortc, the node's stack, has no ICE over TCP)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
import time
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..platform.config import settings

log = logging.getLogger(__name__)

# The shared secret is read again this often, so that its rotation reaches warm Lambdas.
CACHE_SECONDS = 60.0
# After a failed read, joins go on without TURN for this long before the next try:
# an outage of Secrets Manager must not add its timeouts to every join.
RETRY_SECONDS = 10.0

_lock = threading.Lock()
_secret: str | None = None
_read_at = float("-inf")
_failed_at = float("-inf")


def credentials(secret: str, user_id: str, ttl_seconds: int,
                now: float | None = None) -> tuple[str, str]:
    """(username, credential) for `user_id`, valid for `ttl_seconds` from `now`."""
    expires = int(now if now is not None else time.time()) + ttl_seconds
    username = f"{expires}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def _shared_secret(arn: str) -> str | None:
    global _secret, _read_at, _failed_at
    with _lock:
        now = time.monotonic()
        if _secret is not None and now - _read_at < CACHE_SECONDS:
            return _secret
        if now - _failed_at < RETRY_SECONDS:
            return _secret
        client = boto3.client("secretsmanager", config=Config(
            connect_timeout=1, read_timeout=2, retries={"max_attempts": 1}))
        try:
            value = client.get_secret_value(SecretId=arn)["SecretString"].strip()
        except (BotoCoreError, ClientError):
            _failed_at = now
            log.exception("reading the TURN shared secret failed; joins go without TURN")
            # A secret read before keeps serving: it is what coturn most likely still has.
            return _secret
        _secret, _read_at = value or None, now
        return _secret


def forget() -> None:
    global _secret, _read_at, _failed_at
    with _lock:
        _secret, _read_at, _failed_at = None, float("-inf"), float("-inf")


def ice_servers(user_id: str) -> list[dict[str, Any]]:
    """The ICE servers for one join: the configured ones (STUN), and the TURN server
    with credentials of this user's own, when the deployment has one."""
    conf = settings()
    servers = list(conf.ice_servers)
    if conf.turn_urls and conf.turn_secret_arn:
        secret = _shared_secret(conf.turn_secret_arn)
        if secret is not None:
            username, credential = credentials(secret, user_id,
                                               conf.turn_credential_ttl_seconds)
            servers.append({"urls": list(conf.turn_urls), "username": username,
                            "credential": credential})
    return servers
