"""Secrets of the local runtime (the origin's header value, TURN's shared secret), kept
under .local/ so that a restart keeps them, readable by their owner only."""

from __future__ import annotations

import secrets
from pathlib import Path


def kept_secret(path: Path) -> str:
    """The secret stored at `path`, made on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()
