"""The key pairs of local runs (join tokens, Web Push's VAPID), kept under .local/ so
restarts keep them."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chalicelib.jointoken import new_key_pair


def join_token_keys(path: Path) -> tuple[str, str]:
    """(private PEM, public PEM), created at `path` on first use."""
    if not path.exists():
        private, _ = new_key_pair()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(private)
        path.chmod(0o600)
    private_pem = path.read_text()
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private_pem, public_pem


def vapid_key(path: Path) -> str:
    """The Web Push VAPID private key (PEM), created at `path` on first use: browsers
    subscribed with its public key keep working across restarts."""
    from chalicelib.webpush import new_key_pair

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new_key_pair().private_pem)
        path.chmod(0o600)
    return path.read_text()
