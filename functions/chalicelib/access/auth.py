"""Verifies the caller's bearer JWT: a Cognito user pool's access token in AWS, the local
issuer's elsewhere. The app checks the token itself (no API Gateway authorizer), so
the same path runs in tests, locally and in the cloud."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import jwt

from ..platform.config import settings
from ..platform.errors import Unauthorized, Unavailable

ADMIN_GROUP = "admin"
_ALGORITHMS = ["RS256", "ES256"]
# A key id the issuer does not publish is remembered as unknown this long: a stream of
# tokens under a made-up `kid` must not make every request fetch the key set again.
UNKNOWN_KID_SECONDS = 300.0
# However many different unknown ids arrive, the key set is fetched again at most this
# often (a new Cognito key is published well before it signs anything).
MIN_REFRESH_SECONDS = 60.0
# Bounds the memory that made-up key ids can take.
MAX_UNKNOWN_KIDS = 1024
_JWKS_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class Principal:
    user_id: str
    groups: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN_GROUP in self.groups


class RemoteKeySet:
    """The issuer's published signing keys, fetched on first use and kept for a warm
    Lambda's life; fetched again only for a key id it has not seen, and then rarely."""

    def __init__(self, url: str) -> None:
        self._client = jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=3600,
                                       timeout=_JWKS_TIMEOUT_SECONDS)
        self._lock = threading.Lock()
        self._unknown: dict[str, float] = {}
        self._refreshed_at: float | None = None
        self.fetches = 0

    def _keys(self, refresh: bool) -> dict[str, Any]:
        try:
            if refresh or self._refreshed_at is None:
                self.fetches += 1
                self._refreshed_at = time.monotonic()
            keys = self._client.get_signing_keys(refresh=refresh)
        except jwt.PyJWKClientConnectionError as exc:
            raise Unavailable("The identity provider's keys cannot be read now; try again",
                              code="identity_unavailable") from exc
        except jwt.PyJWKClientError as exc:
            raise Unavailable("The identity provider publishes no usable keys",
                              code="identity_unavailable") from exc
        return {key.key_id: key.key for key in keys if key.key_id}

    def key(self, kid: str | None) -> Any:
        if kid is None:
            raise Unauthorized("The token names no signing key", code="invalid_token")
        with self._lock:
            known = self._keys(refresh=False)
            if kid in known:
                return known[kid]
            now = time.monotonic()
            remembered = self._unknown.get(kid)
            recent = self._refreshed_at is not None and \
                now - self._refreshed_at < MIN_REFRESH_SECONDS
            if (remembered is not None and remembered > now) or recent:
                self._forget_unknown(kid, now)
                raise Unauthorized("The token was signed by an unknown key",
                                   code="invalid_token")
            known = self._keys(refresh=True)
            if kid in known:
                self._unknown.pop(kid, None)
                return known[kid]
            self._forget_unknown(kid, now)
            raise Unauthorized("The token was signed by an unknown key", code="invalid_token")

    def _forget_unknown(self, kid: str, now: float) -> None:
        """Remember `kid` as unknown, dropping the oldest entries past the bound."""
        self._unknown.pop(kid, None)
        self._unknown[kid] = now + UNKNOWN_KID_SECONDS
        while len(self._unknown) > MAX_UNKNOWN_KIDS:
            self._unknown.pop(next(iter(self._unknown)))


@cache
def remote_key_set(url: str) -> RemoteKeySet:
    # One per URL, shared across invocations of a warm Lambda.
    return RemoteKeySet(url)


def _signing_key(kid: str | None) -> Any:
    conf = settings()
    if conf.auth_jwks is not None:
        keys = jwt.PyJWKSet.from_dict(conf.auth_jwks).keys
        for key in keys:
            if kid is None or key.key_id == kid:
                return key.key
        raise Unauthorized("The token was signed by an unknown key", code="invalid_token")
    url = conf.auth_jwks_url or conf.auth_issuer.rstrip("/") + "/.well-known/jwks.json"
    return remote_key_set(url).key(kid)


def verify_bearer(header: str | None) -> Principal:
    if not header:
        raise Unauthorized("An Authorization: Bearer token is required", code="missing_token")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("The Authorization header must be 'Bearer <token>'",
                           code="missing_token")
    conf = settings()
    try:
        header_fields = jwt.get_unverified_header(token)
        kid = header_fields.get("kid")
        key = _signing_key(kid if isinstance(kid, str) else None)
        claims = jwt.decode(
            token,
            key,
            algorithms=_ALGORITHMS,
            issuer=conf.auth_issuer,
            options={"require": ["exp", "iss", "sub"], "verify_aud": False},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("The token has expired", code="token_expired") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"The token is not valid: {exc}", code="invalid_token") from exc
    # Cognito signs ID tokens with the same keys: only an access token grants API access
    # (an ID token says who someone is, to the client it was issued to).
    if claims.get("token_use") != "access":
        raise Unauthorized("The token must be an access token", code="invalid_token")
    if conf.auth_audience is not None and claims.get("client_id") != conf.auth_audience:
        # Access tokens name their app client in `client_id` (they carry no `aud`).
        raise Unauthorized("The token is for another client", code="invalid_token")
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject or len(subject) > 128:
        raise Unauthorized("The token's subject is not a user id", code="invalid_token")
    groups = claims.get("cognito:groups", [])
    if not isinstance(groups, list):
        groups = []
    return Principal(user_id=subject, groups=frozenset(str(g) for g in groups))
