"""Join tokens: short-lived EdDSA JWTs that admit one user to one Space on one node.

The private key is the control plane's alone (Secrets Manager in AWS, an environment
variable locally); nodes hold only the public key. Claims: docs/media-contract.md."""

from __future__ import annotations

import json
import time
import uuid
from functools import cache
from typing import Any

import boto3
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .config import ConfigError, settings

ISSUER = "parlor-control-plane"
AUDIENCE = "parlor-media"


@cache
def _private_key() -> Ed25519PrivateKey:
    conf = settings()
    pem = conf.join_token_private_key_pem
    if pem is None and conf.join_token_secret_arn:
        secret = boto3.client("secretsmanager").get_secret_value(
            SecretId=conf.join_token_secret_arn)["SecretString"]
        pem = json.loads(secret)["private_key"] if secret.lstrip().startswith("{") else secret
    if pem is None:
        raise ConfigError("JOIN_TOKEN_PRIVATE_KEY or JOIN_TOKEN_SECRET_ARN must be set")
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("the join token key must be an Ed25519 private key")
    return key


def mint(user_id: str, space_id: str, role: str, node_id: str, muted: bool, version: int,
         origin: str | None = None) -> tuple[str, int]:
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
    return jwt.encode(claims, _private_key(), algorithm="EdDSA"), expires_at


def new_key_pair() -> tuple[str, str]:
    """A fresh (private PEM, public PEM) pair, for set-up scripts and tests."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def provision_key_pair(event: dict[str, Any], secrets: Any = None) -> dict[str, Any]:
    """The custom resource that makes the join-token key pair at deploy time, so the
    private key is never in a template: it writes the private key to one secret (read
    only by the API) and the public key to another (read by the media nodes). A change of
    the resource's `Generation` property makes a new pair, which is how keys rotate."""
    client = secrets or boto3.client("secretsmanager")
    properties = event["ResourceProperties"]
    physical_id = event.get("PhysicalResourceId") or f"join-token-keys-{uuid.uuid4().hex}"
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": physical_id}
    old = event.get("OldResourceProperties") or {}
    if event["RequestType"] == "Update" and old.get("Generation") == properties.get("Generation"):
        return {"PhysicalResourceId": physical_id}
    private, public = new_key_pair()
    client.put_secret_value(SecretId=properties["PrivateKeySecretArn"], SecretString=private)
    client.put_secret_value(SecretId=properties["PublicKeySecretArn"], SecretString=public)
    return {"PhysicalResourceId": physical_id, "Data": {"Generation": properties.get("Generation")}}
