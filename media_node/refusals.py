"""Join tokens that an `end` or a `remove` has made worthless.

A join token lives about a minute: without this, one minted just before an `end` would
reopen the Space (or one minted before a `remove` bring the removed user back). After
the command, a token issued (`iat`) at or before it is refused: `410 space_ended`,
`403 removed`.

Each worker keeps its own (node.py), and a relay adopts its owner's with the feed. The
node's front keeps them too (front.py, from the commands the supervisor hands on), so
that a worker restarted after a command, which remembers nothing, cannot admit such a
token either.
"""

from __future__ import annotations

import time
from typing import Any

from .signaling import SignalingError
from .tokens import JoinClaims

# Longer than any join token lives (about a minute, plus clock leeway).
REFUSAL_MEMORY_SECONDS = 600


class Refusals:
    def __init__(self) -> None:
        self._ended: dict[str, float] = {}
        self._removed: dict[tuple[str, str], float] = {}

    def refuse_earlier_tokens(self, space_id: str, user_id: str | None = None) -> None:
        """From now on, tokens for the Space (for the user, with `user_id`) issued up to
        now are refused."""
        now = time.time()
        if user_id is None:
            self._ended[space_id] = now
        else:
            self._removed[(space_id, user_id)] = now

    def check(self, claims: JoinClaims) -> None:
        """Raise the refusal that applies to `claims`, if one does."""
        self._forget_old()
        ended = self._ended.get(claims.space_id)
        if ended is not None and claims.issued_at <= ended:
            raise SignalingError(410, "space_ended", "this Space has ended")
        removed = self._removed.get((claims.space_id, claims.user_id))
        if removed is not None and claims.issued_at <= removed:
            raise SignalingError(403, "removed", "you were removed from this Space")

    def of_space(self, space_id: str) -> dict[str, Any]:
        """What a relay of the Space must refuse too (sent with the feed)."""
        return {
            "ended": self._ended.get(space_id),
            "removed": {u: t for (s, u), t in self._removed.items() if s == space_id},
        }

    def adopt(self, space_id: str, refusals: dict[str, Any]) -> None:
        """Take another's refusals of the Space (`of_space`'s shape), keeping the later."""
        ended = refusals.get("ended")
        if isinstance(ended, int | float):
            self._ended[space_id] = max(float(ended), self._ended.get(space_id, 0.0))
        removed = refusals.get("removed")
        for user_id, at in removed.items() if isinstance(removed, dict) else ():
            if isinstance(at, int | float):
                key = (space_id, str(user_id))
                self._removed[key] = max(float(at), self._removed.get(key, 0.0))

    def _forget_old(self) -> None:
        horizon = time.time() - REFUSAL_MEMORY_SECONDS
        self._ended = {k: t for k, t in self._ended.items() if t > horizon}
        self._removed = {k: t for k, t in self._removed.items() if t > horizon}
