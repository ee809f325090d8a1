"""Join tokens: short-lived EdDSA JWTs minted by the control plane, verified here.

The control plane's keys rotate (docs/media-contract.md): a token names its key in the
header's `kid`, and the node holds a key set, the current key and the previous one.
A token under a key id the node does not hold makes it read the set again from where
it came (Secrets Manager), at most once per REFRESH_SECONDS, so the first token of a
new key admits its holder and made-up key ids cost one read per interval at most."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from .errors import NodeError

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger("media_node.tokens")

AUDIENCE = "parlor-media"
ISSUER = "parlor-control-plane"
ROLES = frozenset({"host", "co_host", "speaker", "listener"})
PUBLISHING_ROLES = frozenset({"host", "co_host", "speaker"})
# Clocks of Lambda and Fargate hosts agree closely; a few seconds absorbs the rest.
LEEWAY_SECONDS = 5
# The least time between two reads of the key set prompted by unknown key ids: short,
# since a token of a new key arriving within it after such a read is refused (its
# holder's client rejoins), long enough that made-up key ids cost little.
REFRESH_SECONDS = 5.0


class TokenError(NodeError):
    """The token does not admit this request; `status` is the HTTP status to answer."""


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
    # The Space is recorded (claim `rec`): everyone in it is told (welcome).
    recording: bool = False

    @property
    def may_publish(self) -> bool:
        return self.role in PUBLISHING_ROLES


def key_id(public: Ed25519PublicKey) -> str:
    """The key's RFC 7638 JWK thumbprint, as the control plane names its keys."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"),
                           sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def parse_key_set(text: str) -> dict[str, Ed25519PublicKey]:
    """kid -> key, current first: a PEM public key, or the control plane's JSON set
    `{"keys": [{"kid": ..., "public_key": PEM}, ...]}`."""
    text = text.strip()
    pems: list[tuple[str | None, str]]
    if text.startswith("{"):
        try:
            document = json.loads(text)
            pems = [(entry.get("kid"), entry["public_key"]) for entry in document["keys"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"the join token key set is malformed: {exc!r}") from None
    else:
        # Keys passed through env files often arrive with literal "\\n" escapes.
        pems = [(None, text.replace("\\n", "\n"))]
    keys: dict[str, Ed25519PublicKey] = {}
    for kid, pem in pems:
        try:
            key = load_pem_public_key(str(pem).encode())
        except ValueError as exc:
            raise ValueError(f"JOIN_TOKEN_PUBLIC_KEY is not a PEM public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("JOIN_TOKEN_PUBLIC_KEY must be an Ed25519 public key")
        keys[str(kid) if kid else key_id(key)] = key
    if not keys:
        raise ValueError("the join token key set is empty")
    return keys


def secrets_manager_reader(secret_arn: str) -> Callable[[], str]:
    """Reads the public key set from Secrets Manager, briefly: it runs on a join's path."""
    import boto3
    from botocore.config import Config as BotoConfig

    client = boto3.client("secretsmanager", config=BotoConfig(
        connect_timeout=1, read_timeout=2, retries={"max_attempts": 1}))

    def read() -> str:
        return str(client.get_secret_value(SecretId=secret_arn)["SecretString"])

    return read


class TokenVerifier:
    def __init__(self, public_key_pem: str, node_id: str,
                 read_keys: Callable[[], str] | None = None) -> None:
        """`public_key_pem`: a PEM or a JSON key set (empty: read it with `read_keys`).
        `read_keys`: where the set is read again when a token names a key not held."""
        self._read_keys = read_keys
        self._lock = threading.Lock()
        self._refreshed_at: float | None = None
        self.refreshes = 0
        if public_key_pem.strip():
            self._keys = parse_key_set(public_key_pem)
        elif read_keys is not None:
            # Not a refresh: the first token of a key rotated in soon after start must
            # find the way to the set open.
            self._keys = parse_key_set(read_keys())
        else:
            raise ValueError("no join token public key, and nowhere to read one")
        self._node_id = node_id
        # A join token admits one connection: a copied token cannot open a second one.
        self._seen: dict[str, float] = {}

    @classmethod
    def from_config(cls, config: Config) -> TokenVerifier:
        arn = config.join_token_public_key_secret_arn
        return cls(config.join_token_public_key, config.node_id,
                   secrets_manager_reader(arn) if arn else None)

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def _key(self, kid: object) -> list[Ed25519PublicKey]:
        """The keys a token with this header `kid` may be signed with."""
        if kid is None:
            # A token that names no key (minted before keys had ids): any key held.
            return list(self._keys.values())
        if not isinstance(kid, str):
            raise TokenError(401, "invalid_token", "the join token's kid is not a string")
        with self._lock:
            if kid not in self._keys:
                self._refresh()
            key = self._keys.get(kid)
        if key is None:
            raise TokenError(401, "invalid_token", "the join token is signed by an unknown key")
        return [key]

    def _refresh(self) -> None:
        now = time.monotonic()
        if self._read_keys is None or (
                self._refreshed_at is not None and now - self._refreshed_at < REFRESH_SECONDS):
            return
        self._refreshed_at = now
        self.refreshes += 1
        try:
            keys = parse_key_set(self._read_keys())
        except Exception as exc:
            # The keys held stay: a failed read must not lock everyone out.
            log.warning("reading the join token keys failed", extra={"why": repr(exc)})
            return
        self._keys = keys
        log.info("join token keys read", extra={"key_ids": list(keys)})

    def verify(
        self, authorization: str | None, space_id: str, *, any_node: bool = False
    ) -> JoinClaims:
        """The token's claims if it admits someone to `space_id` on this node.

        `any_node`: a token for another node is returned rather than refused, for the
        node's front to forward the request to the node it names.
        """
        token = _bearer(authorization)
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise TokenError(401, "invalid_token", f"the join token is invalid: {exc}") from None
        claims = None
        failure: jwt.PyJWTError | None = None
        for key in self._key(kid):
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=["EdDSA"],
                    audience=AUDIENCE,
                    issuer=ISSUER,
                    leeway=LEEWAY_SECONDS,
                    options={"require": ["exp", "iat", "sub", "space", "role", "node", "jti"]},
                )
                break
            except jwt.ExpiredSignatureError:
                raise TokenError(401, "token_expired", "the join token has expired") from None
            except jwt.InvalidSignatureError as exc:
                failure = exc
            except jwt.PyJWTError as exc:
                raise TokenError(
                    401, "invalid_token", f"the join token is invalid: {exc}") from None
        if claims is None:
            raise TokenError(401, "invalid_token", f"the join token is invalid: {failure}")
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
            recording=claims.get("rec") is True,
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
