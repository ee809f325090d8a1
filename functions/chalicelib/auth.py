"""Verifies the caller's bearer JWT: a Cognito user pool's token in AWS, the local
issuer's elsewhere. The app checks the token itself (no API Gateway authorizer), so
the same path runs in tests, locally and in the cloud."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import jwt

from .config import settings
from .errors import Unauthorized

ADMIN_GROUP = "admin"
_ALGORITHMS = ["RS256", "ES256"]


@dataclass(frozen=True)
class Principal:
    user_id: str
    groups: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN_GROUP in self.groups


@cache
def _jwk_client(url: str) -> jwt.PyJWKClient:
    # Caches the key set across invocations of a warm Lambda.
    return jwt.PyJWKClient(url, cache_keys=True, lifespan=3600)


def _signing_key(token: str, kid: str | None) -> Any:
    conf = settings()
    if conf.auth_jwks is not None:
        keys = jwt.PyJWKSet.from_dict(conf.auth_jwks).keys
        for key in keys:
            if kid is None or key.key_id == kid:
                return key.key
        raise Unauthorized("The token was signed by an unknown key", code="invalid_token")
    url = conf.auth_jwks_url or conf.auth_issuer.rstrip("/") + "/.well-known/jwks.json"
    try:
        return _jwk_client(url).get_signing_key_from_jwt(token).key
    except jwt.PyJWKClientError as exc:
        raise Unauthorized("The token's signing key is unknown", code="invalid_token") from exc


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
        key = _signing_key(token, header_fields.get("kid"))
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
    if conf.auth_audience is not None:
        # Cognito ID tokens carry `aud`; its access tokens carry `client_id` instead.
        audience = claims.get("aud", claims.get("client_id"))
        if audience != conf.auth_audience:
            raise Unauthorized("The token is for another client", code="invalid_token")
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject or len(subject) > 128:
        raise Unauthorized("The token's subject is not a user id", code="invalid_token")
    groups = claims.get("cognito:groups", [])
    if not isinstance(groups, list):
        groups = []
    return Principal(user_id=subject, groups=frozenset(str(g) for g in groups))
