"""What the node has been told of its participants' authority, and admission by it.

The control plane versions a member's authority (role, mute, removal) and says which
version a join token carries (its `ver` claim); commands and reconciliation tell the
node of later versions (docs/media-contract.md, sections 2, 4 and 8). A join token
lives about a minute, so one minted before a demotion, a mute or a removal can reach
the node after it: the node then admits the session with what it knows, never with
less recent authority than that, and refuses a removed user or an ended Space.

Removal and the end of a Space are final (the control plane never undoes them), so
they need no version. The front keeps a book (from the commands it hands on) and so
does each worker (commands, reconciliation, and for a relay its owner's book with the
feed): a worker restarted after a command learns it from the front at its next join.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from .errors import NodeError
from .tokens import ROLES, JoinClaims

REMOVED = "removed"
LISTENER = "listener"
# Longer than any join token lives (about a minute, plus clock leeway): after that, a
# token the entry would refuse or correct cannot be presented any more.
MEMORY_SECONDS = 600


@dataclass(frozen=True)
class Authority:
    version: int
    role: str  # host | co_host | speaker | listener | removed
    muted: bool

    @property
    def removed(self) -> bool:
        return self.role == REMOVED

    def as_list(self) -> list[Any]:
        return [self.version, self.role, self.muted]

    @classmethod
    def parse(cls, raw: Any) -> Authority | None:
        """From `as_list`'s shape, or None if it is not one."""
        if not isinstance(raw, list) or len(raw) != 3:
            return None
        version, role, muted = raw
        if type(version) is not int or role not in ROLES | {REMOVED} or \
                not isinstance(muted, bool):
            return None
        return cls(version, role, muted)


class AuthorityBook:
    def __init__(self) -> None:
        self._ended: dict[str, float] = {}
        self._members: dict[tuple[str, str], tuple[Authority, float]] = {}

    def end(self, space_id: str) -> None:
        """The Space ended: no token of it admits anyone any more."""
        self._ended.setdefault(space_id, time.monotonic())

    def ended(self, space_id: str) -> bool:
        return space_id in self._ended

    def learn(self, space_id: str, user_id: str, authority: Authority) -> bool:
        """Records `authority` if it is newer than what is known; whether it was. A
        removal stays whatever comes after it."""
        key = (space_id, user_id)
        known = self._members.get(key)
        if known is not None and (known[0].removed or known[0].version >= authority.version):
            return False
        self._members[key] = (authority, time.monotonic())
        return True

    def known(self, space_id: str, user_id: str) -> Authority | None:
        entry = self._members.get((space_id, user_id))
        return entry[0] if entry is not None else None

    def effective(self, claims: JoinClaims) -> JoinClaims:
        """The claims to admit the session with: the token's, or the role and mute of a
        later version the node knows. Raises for an ended Space or a removed user."""
        self._forget_old()
        if claims.space_id in self._ended:
            raise NodeError(410, "space_ended", "this Space has ended")
        known = self.known(claims.space_id, claims.user_id)
        if known is not None and known.removed:
            raise NodeError(403, "removed", "you were removed from this Space")
        if known is None or known.version <= claims.version:
            return claims
        return dataclasses.replace(claims, role=known.role, muted=known.muted,
                                   version=known.version)

    def of_space(self, space_id: str) -> dict[str, Any]:
        """What a relay of the Space must know too (sent with the feed)."""
        return {
            "ended": space_id in self._ended,
            "members": {u: a.as_list() for (s, u), (a, _) in self._members.items()
                        if s == space_id},
        }

    def adopt(self, space_id: str, book: dict[str, Any]) -> None:
        """Learn another book's entries of the Space (`of_space`'s shape)."""
        if book.get("ended") is True:
            self.end(space_id)
        members = book.get("members")
        for user_id, raw in members.items() if isinstance(members, dict) else ():
            authority = Authority.parse(raw)
            if authority is not None:
                self.learn(space_id, str(user_id), authority)

    def _forget_old(self) -> None:
        horizon = time.monotonic() - MEMORY_SECONDS
        if any(t < horizon for t in self._ended.values()):
            self._ended = {k: t for k, t in self._ended.items() if t >= horizon}
        if any(t < horizon for _, t in self._members.values()):
            self._members = {k: v for k, v in self._members.items() if v[1] >= horizon}
