"""The key pairs of local runs, kept under .local/ so restarts keep them: the join-token
key set (current key first, then the previous one), which `make up` puts in the
embedded Secrets Manager, where the API and the media node read it as they do in AWS,
and `make rotate-keys` (local/rotate.py) rotates there and here; and Web Push's VAPID
key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chalicelib.media.jointoken import (
    SigningKey,
    new_signing_key,
    parse_private_set,
    private_set_document,
    write_key_sets,
)

# The secrets' names in the embedded Secrets Manager (the stack's are generated).
PRIVATE_KEYS_NAME = "parlor-join-token-private"
PUBLIC_KEYS_NAME = "parlor-join-token-public"


def load_key_set(path: Path, legacy_pem: Path | None = None) -> list[SigningKey]:
    """The key set at `path`; made on first use (from the single key of `legacy_pem`,
    which earlier runs kept, if there is one)."""
    if not path.exists():
        if legacy_pem is not None and legacy_pem.exists():
            keys = parse_private_set(legacy_pem.read_text())
        else:
            keys = [new_signing_key()]
        save_key_set(path, keys)
    return parse_private_set(path.read_text())


def save_key_set(path: Path, keys: list[SigningKey]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.touch(mode=0o600)
    path.write_text(private_set_document(keys))


def publish(client: Any, keys: list[SigningKey]) -> tuple[str, str]:
    """Writes the set to the embedded Secrets Manager's two secrets, made if missing;
    returns their ARNs (private, public)."""
    arns = []
    for name in (PRIVATE_KEYS_NAME, PUBLIC_KEYS_NAME):
        try:
            arns.append(client.describe_secret(SecretId=name)["ARN"])
        except client.exceptions.ResourceNotFoundException:
            arns.append(client.create_secret(Name=name, SecretString="placeholder")["ARN"])
    write_key_sets(client, arns[0], arns[1], keys)
    return arns[0], arns[1]


def vapid_key(path: Path) -> str:
    """The Web Push VAPID private key (PEM), created at `path` on first use: browsers
    subscribed with its public key keep working across restarts."""
    from chalicelib.alerts.webpush import new_key_pair

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new_key_pair().private_pem)
        path.chmod(0o600)
    return path.read_text()
