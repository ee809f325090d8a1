"""Commands from the control plane: their shapes (docs/media-contract.md, section 4).

Commands are statements of committed state: a member's whole authority at a version, a
Space's end, a Space's move away, so applying one twice, or after a later one, changes
nothing. The supervisor takes them off the node's queue (supervisor/queue.py) and
remembers what its front needs; each worker applies them to its rooms
(worker/rooms.py)."""

from __future__ import annotations

import json
from typing import Any

from .authority import Authority, AuthorityBook


class CommandError(ValueError):
    """A message that is not a command this node understands."""


VERSION = 2
KINDS = ("member", "end", "close")


def parse(body: str) -> dict[str, Any]:
    try:
        command = json.loads(body)
    except ValueError:
        raise CommandError("not JSON") from None
    if not isinstance(command, dict):
        raise CommandError("not a JSON object")
    if command.get("v") != VERSION:
        raise CommandError(f"unknown version {command.get('v')!r}")
    kind = command.get("type")
    if kind not in KINDS:
        raise CommandError(f"unknown type {kind!r}")
    if not isinstance(command.get("space_id"), str):
        raise CommandError("space_id is missing")
    if kind == "member":
        if not isinstance(command.get("user_id"), str):
            raise CommandError("user_id is missing")
        if authority_of(command) is None:
            raise CommandError("a member command needs version, role and muted")
    return command


def authority_of(command: dict[str, Any]) -> Authority | None:
    return Authority.parse([command.get("version"), command.get("role"), command.get("muted")])


def remember(book: AuthorityBook, command: dict[str, Any]) -> None:
    """What the front keeps of a command (authority.py), before the workers apply it."""
    if command["type"] == "end":
        book.end(command["space_id"])
    elif command["type"] == "member":
        authority = authority_of(command)
        assert authority is not None
        book.learn(command["space_id"], command["user_id"], authority)
