"""Join tokens: short-lived EdDSA JWTs minted by the control plane, verified here."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

AUDIENCE = "parlor-media"
ISSUER = "parlor-control-plane"
ROLES = frozenset({"host", "co_host", "speaker", "listener"})
PUBLISHING_ROLES = frozenset({"host", "co_host", "speaker"})
# Clocks of Lambda and Fargate hosts agree closely; a few seconds absorbs the rest.
LEEWAY_SECONDS = 5


class TokenError(Exception):
    """The token does not admit this request; `status` is the HTTP status to answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class JoinClaims:
    user_id: str
    space_id: str
    role: str
    node_id: str
    muted: bool
    jti: str
    issued_at: float
    expires_at: float
    # The node that mixes the Space when `node_id` only relays it (docs/media-contract.md).
    origin: str | None = None
    # The version of the member's authority that `role` and `muted` are (authority.py).
    version: int = 0

    @property
    def may_publish(self) -> bool:
        return self.role in PUBLISHING_ROLES


class TokenVerifier:
    def __init__(self, public_key_pem: str, node_id: str) -> None:
        try:
            key = load_pem_public_key(public_key_pem.encode())
        except ValueError as exc:
            raise ValueError(f"JOIN_TOKEN_PUBLIC_KEY is not a PEM public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("JOIN_TOKEN_PUBLIC_KEY must be an Ed25519 public key")
        self._key = key
        self._node_id = node_id
        # A join token admits one connection: a copied token cannot open a second one.
        self._seen: dict[str, float] = {}

    def verify(
        self, authorization: str | None, space_id: str, *, any_node: bool = False
    ) -> JoinClaims:
        """The token's claims if it admits someone to `space_id` on this node.

        `any_node`: a token for another node is returned rather than refused, for the
        node's front to forward the request to the node it names.
        """
        token = _bearer(authorization)
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["EdDSA"],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "sub", "space", "role", "node", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError(401, "token_expired", "the join token has expired") from None
        except jwt.PyJWTError as exc:
            raise TokenError(401, "invalid_token", f"the join token is invalid: {exc}") from None
        role = claims["role"]
        if role not in ROLES:
            raise TokenError(401, "invalid_token", f"unknown role {role!r}")
        if claims["space"] != space_id:
            raise TokenError(403, "wrong_space", "the join token is for another Space")
        if claims["node"] != self._node_id and not any_node:
            raise TokenError(403, "wrong_node", "the join token is for another media node")
        origin = claims.get("origin")
        version = claims.get("ver", 0)
        if type(version) is not int or version < 0:
            raise TokenError(401, "invalid_token", "the join token's ver is not a version")
        return JoinClaims(
            user_id=str(claims["sub"]),
            space_id=space_id,
            role=role,
            node_id=str(claims["node"]),
            muted=bool(claims.get("muted", False)),
            jti=str(claims["jti"]),
            issued_at=float(claims["iat"]),
            expires_at=float(claims["exp"]) + LEEWAY_SECONDS,
            origin=str(origin) if origin else None,
            version=version,
        )

    def verify_feed(self, authorization: str | None, space_id: str) -> JoinClaims:
        """A relay node asking this node for a Space's feed shows the join token that
        placed a listener of that Space on it as a relay of this node: the control plane
        decided that relay, and only it can sign such a token."""
        claims = self.verify(authorization, space_id, any_node=True)
        if claims.origin != self._node_id:
            raise TokenError(403, "wrong_node", "the join token places no relay of this node")
        return claims

    def consume(self, claims: JoinClaims) -> None:
        """Spend the token on the session about to open; a second use is refused."""
        now = time.time()
        for jti in [j for j, exp in self._seen.items() if exp < now]:
            del self._seen[jti]
        if claims.jti in self._seen:
            raise TokenError(401, "token_reused", "the join token was already used")
        self._seen[claims.jti] = claims.expires_at

    def release(self, claims: JoinClaims) -> None:
        """Give back a token whose session did not open, so that it can be retried."""
        self._seen.pop(claims.jti, None)


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise TokenError(401, "missing_token", "an Authorization: Bearer join token is required")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenError(401, "missing_token", "the Authorization header must be 'Bearer <token>'")
    return token.strip()
