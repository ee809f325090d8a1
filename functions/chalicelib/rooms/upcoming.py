"""Upcoming Spaces from the accounts a user follows, for the home page.

Read at request time: the first FOLLOWEES_READ accounts the user follows (by id), each
one's `scheduled` index queried side by side for its next few Spaces, merged soonest
first. It needs no write per follower when a Space is scheduled, which suits what a home
page asks; an account following thousands sees the Spaces of a sample of them, and a
fan-out on write (as the bar does) would be the way past that."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..platform.models import Follow, Space
from ..social import preferences
from . import spaces

FOLLOWEES_READ = 200
PER_HOST = 3
LIMIT = 20
_WORKERS = 8


def _next_of(host_id: str) -> list[Space]:
    return list(Space.scheduled.query(host_id, limit=PER_HOST))


def from_followed(user_id: str) -> dict[str, Any]:
    restricted = preferences.restricted_by_user(user_id)
    hosts = [f.followee_id for f in Follow.query(user_id, limit=FOLLOWEES_READ)
             if f.followee_id not in restricted]
    found: list[Space] = []
    if hosts:
        with ThreadPoolExecutor(max_workers=min(_WORKERS, len(hosts))) as pool:
            for upcoming in pool.map(_next_of, hosts):
                found.extend(upcoming)
    found.sort(key=lambda s: (s.scheduled_start or 0, s.space_id))
    found = found[:LIMIT]
    people = spaces._people(list({s.host_id for s in found}))
    return {"items": [spaces.summary(s, people) for s in found]}
