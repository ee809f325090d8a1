"""Session ids that say where the session lives, so that any node's front can route a
PATCH or DELETE: `<node id, base64url>.<worker index>.<128 random bits>`.

The random part is the capability (docs/media-contract.md); the rest is only an address.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass


def node_tag(node_id: str) -> str:
    return base64.urlsafe_b64encode(node_id.encode()).decode().rstrip("=")


def new_session_id(node_id: str, worker: int) -> str:
    return f"{node_tag(node_id)}.{worker}.{secrets.token_urlsafe(16)}"


@dataclass(frozen=True)
class SessionAddress:
    node_id: str
    worker: int


def address_of(session_id: str) -> SessionAddress | None:
    """Where a session id says its session lives; None for anything not made here."""
    parts = session_id.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    tag = parts[0]
    try:
        padded = tag + "=" * (-len(tag) % 4)
        node_id = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return SessionAddress(node_id, int(parts[1])) if node_id else None
