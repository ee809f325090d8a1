"""The join-token key pair for local runs, kept under .local/ so restarts keep it."""

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
