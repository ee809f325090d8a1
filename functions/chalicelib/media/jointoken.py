"""Join tokens: short-lived EdDSA JWTs that admit one user to one Space on one node.

The private key is the control plane's alone (Secrets Manager in AWS, an environment
variable or the embedded Secrets Manager locally); nodes hold only the public keys.
Claims and the key set's shape: docs/media-contract.md.

Keys rotate: each secret holds a key *set*, the current key first and the previous one
after it. Tokens name their key in the header's `kid` (the key's RFC 7638 thumbprint),
the API signs with the current key and reads the secret again every
JOIN_TOKEN_KEY_CACHE_SECONDS, and nodes accept the current and the previous key, so a
token minted just before a rotation still admits its holder just after it."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import boto3
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..platform.config import ConfigError, settings

ISSUER = "parlor-control-plane"
AUDIENCE = "parlor-media"
# Keys a set keeps: the current one and the one before it (tokens live about a minute,
# and a node learns the new key on the first token that names it).
KEYS_KEPT = 2


def key_id(public: Ed25519PublicKey) -> str:
    """The key's RFC 7638 JWK thumbprint: the same key always gets the same id, so a key
    given as a bare PEM has one too."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"),
                           sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    kid: str
    key: Ed25519PrivateKey

    def private_pem(self) -> str:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()

    def public_pem(self) -> str:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _load_private(pem: str) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except ValueError as exc:
        raise ConfigError(f"the join token key is not a PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("the join token key must be an Ed25519 private key")
    return SigningKey(key_id(key.public_key()), key)


def parse_private_set(text: str) -> list[SigningKey]:
    """A private key set, current key first: `{"keys": [{"kid", "private_key"}, ...]}`,
    or one key as a PEM (or, as earlier deployments wrote it, `{"private_key": PEM}`)."""
    text = text.strip()
    if not text.startswith("{"):
        return [_load_private(text)]
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ConfigError("the join token key set is not JSON") from exc
    if "keys" not in document:
        return [_load_private(str(document["private_key"]))]
    keys = [_load_private(str(entry["private_key"])) for entry in document["keys"]]
    if not keys:
        raise ConfigError("the join token key set is empty")
    return keys


def private_set_document(keys: list[SigningKey]) -> str:
    return json.dumps({"keys": [{"kid": k.kid, "private_key": k.private_pem()} for k in keys]})


def public_set_document(keys: list[SigningKey]) -> str:
    """What nodes read: the public halves, current first (docs/media-contract.md)."""
    return json.dumps({"keys": [{"kid": k.kid, "public_key": k.public_pem()} for k in keys]})


class _CurrentKey:
    """The key that signs now. From a secret it is read again once it is
    JOIN_TOKEN_KEY_CACHE_SECONDS old, so a rotation reaches warm Lambdas; from the
    environment it changes only with the environment."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: SigningKey | None = None
        self._source: str | None = None
        self._read_at = 0.0

    def get(self) -> SigningKey:
        conf = settings()
        with self._lock:
            if conf.join_token_private_key_pem is not None:
                if self._key is None or self._source != conf.join_token_private_key_pem:
                    self._key = parse_private_set(conf.join_token_private_key_pem)[0]
                    self._source = conf.join_token_private_key_pem
                return self._key
            if not conf.join_token_secret_arn:
                raise ConfigError("JOIN_TOKEN_PRIVATE_KEY or JOIN_TOKEN_SECRET_ARN must be set")
            age = time.monotonic() - self._read_at
            if self._key is None or self._source != conf.join_token_secret_arn or \
                    age >= conf.join_token_key_cache_seconds:
                text = boto3.client("secretsmanager").get_secret_value(
                    SecretId=conf.join_token_secret_arn)["SecretString"]
                self._key = parse_private_set(text)[0]
                self._source = conf.join_token_secret_arn
                self._read_at = time.monotonic()
            return self._key


current_key = _CurrentKey()


def mint(user_id: str, space_id: str, role: str, node_id: str, muted: bool, version: int,
         origin: str | None = None, recording: bool = False) -> tuple[str, int]:
    """`version`: the member's authority version that `role` and `muted` are of (a node
    that knows a later one acts on that instead). `origin`: the node that mixes the
    Space, when `node_id` is to relay it."""
    now = int(time.time())
    expires_at = now + settings().join_token_ttl_seconds
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": user_id,
        "space": space_id,
        "role": role,
        "node": node_id,
        "muted": muted,
        "ver": version,
        "iat": now,
        "exp": expires_at,
        "jti": uuid.uuid4().hex,
    }
    if origin is not None:
        claims["origin"] = origin
    if recording:
        # The node tells everyone in a recorded Space (docs/media-contract.md).
        claims["rec"] = True
    signing = current_key.get()
    token = jwt.encode(claims, signing.key, algorithm="EdDSA", headers={"kid": signing.kid})
    return token, expires_at


def new_key_pair() -> tuple[str, str]:
    """A fresh (private PEM, public PEM) pair, for set-up scripts and tests."""
    key = SigningKey(kid="", key=Ed25519PrivateKey.generate())
    return key.private_pem(), key.public_pem()


def new_signing_key() -> SigningKey:
    key = Ed25519PrivateKey.generate()
    return SigningKey(key_id(key.public_key()), key)


def rotated(previous: list[SigningKey]) -> list[SigningKey]:
    """A new current key, followed by the previous current one."""
    return [new_signing_key(), *previous][:KEYS_KEPT]


def rotate_secrets(client: Any, private_arn: str, public_arn: str) -> list[SigningKey]:
    """Puts a new key at the head of both secrets' sets and keeps the one it replaces.
    The public set is written first: a node that reads it early only knows a key nobody
    signs with yet, while the API must never sign with a key nodes cannot read."""
    try:
        previous = parse_private_set(
            client.get_secret_value(SecretId=private_arn)["SecretString"])
    except (ConfigError, KeyError, TypeError):
        # The secret's first value is CloudFormation's random placeholder: no key yet.
        previous = []
    keys = rotated(previous[:1])
    write_key_sets(client, private_arn, public_arn, keys)
    return keys


def write_key_sets(client: Any, private_arn: str, public_arn: str,
                   keys: list[SigningKey]) -> None:
    client.put_secret_value(SecretId=public_arn, SecretString=public_set_document(keys))
    client.put_secret_value(SecretId=private_arn, SecretString=private_set_document(keys))


def provision_key_pair(event: dict[str, Any], secrets: Any = None) -> dict[str, Any]:
    """The custom resource that makes the join-token keys at deploy time, so no private
    key is ever in a template: it writes the private key set to one secret (read only by
    the API) and the public set to another (read by the media nodes). A change of the
    resource's `Generation` property makes a new current key and keeps the previous
    one in both sets: that is how keys rotate without a failed join."""
    client = secrets or boto3.client("secretsmanager")
    properties = event["ResourceProperties"]
    physical_id = event.get("PhysicalResourceId") or f"join-token-keys-{uuid.uuid4().hex}"
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": physical_id}
    old = event.get("OldResourceProperties") or {}
    if event["RequestType"] == "Update" and old.get("Generation") == properties.get("Generation"):
        return {"PhysicalResourceId": physical_id}
    private_arn = properties["PrivateKeySecretArn"]
    public_arn = properties["PublicKeySecretArn"]
    if event["RequestType"] == "Create":
        # Nothing to keep; and the role need not read the secrets' placeholders.
        keys = [new_signing_key()]
        write_key_sets(client, private_arn, public_arn, keys)
    else:
        keys = rotate_secrets(client, private_arn, public_arn)
    return {"PhysicalResourceId": physical_id,
            "Data": {"Generation": properties.get("Generation"), "KeyId": keys[0].kid}}
