"""The local token issuer: stands in for the Cognito user pool when Parlor runs on one
machine or in tests. It signs RS256 JWTs as Cognito does; the API verifies them with the
key set this issuer publishes (AUTH_JWKS), through the same code as in AWS."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://parlor.local/issuer"
KEY_ID = "parlor-local-1"


class LocalIssuer:
    def __init__(self, private_key: rsa.RSAPrivateKey, issuer: str = ISSUER) -> None:
        self._key = private_key
        self.issuer = issuer

    @classmethod
    def generate(cls) -> LocalIssuer:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def load_or_create(cls, path: Path) -> LocalIssuer:
        """The issuer whose key is kept at `path`, so tokens outlive a restart."""
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            assert isinstance(key, rsa.RSAPrivateKey)
            return cls(key)
        issuer = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(issuer._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        path.chmod(0o600)
        return issuer

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        public.update({"kid": KEY_ID, "alg": "RS256", "use": "sig"})
        return {"keys": [public]}

    def mint(self, user_id: str, *, groups: list[str] | None = None,
             ttl_seconds: int = 3600, **extra: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": user_id, "iat": now, "exp": now + ttl_seconds,
            "token_use": "access", **extra,
        }
        if groups:
            claims["cognito:groups"] = groups
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": KEY_ID})
