"""The top-of-timeline bar: live Spaces in which someone the user follows is on stage.

The alert delivery writes one entry per user, Space and person (see delivery.py); the
bar reads the user's entries and checks each Space as it is now, so a Space that ended
or a person who left the stage is gone from the bar at once, before any clean-up."""

from __future__ import annotations

from typing import Any

from ..platform.models import Member, Space, TimelineEntry, User
from ..rooms import spaces
from ..social import preferences

BAR_MAX = 20


def _on_stage(space: Space, user_id: str, users: dict[str, User],
              member: Member | None) -> dict[str, Any]:
    """A followed person on stage; `speaking` (from the media node, via presence.py) is
    what the bar's ring shows."""
    default = spaces.HOST if user_id == space.host_id else spaces.SPEAKER
    return {**spaces._person(user_id, users), "role": member.role if member else default,
            "speaking": bool(member.speaking) if member else False}


def _stage(space: Space) -> set[str]:
    return {space.host_id, *(space.on_stage_connected or ())}


def bar(user_id: str) -> dict[str, Any]:
    # A user's entries are the live Spaces of the accounts they follow: a handful, and
    # expired or cleared ones go, so one partition read stays small.
    people_of: dict[str, set[str]] = {}
    for entry in TimelineEntry.query(user_id):
        people_of.setdefault(entry.space_id, set()).add(entry.person_id)
    if not people_of:
        return {"items": []}
    restricted = preferences.restricted_by_user(user_id)
    shown: list[tuple[Space, list[str]]] = []
    for space in Space.batch_get(list(people_of)):
        if space.state != spaces.LIVE or space.host_id == user_id \
                or space.host_id in restricted:
            continue
        on_stage = sorted((people_of[space.space_id] & _stage(space)) - restricted)
        if on_stage:
            shown.append((space, on_stage))
    # Most relevant first: more followed people on stage, then more listeners.
    shown.sort(key=lambda s: (-len(s[1]), -int(s[0].listener_count), -(s[0].started_at or 0)))
    shown = shown[:BAR_MAX]
    user_ids = {uid for space, on_stage in shown for uid in (space.host_id, *on_stage)}
    users = {u.user_id: u for u in User.batch_get(list(user_ids))} if user_ids else {}
    member_keys = [(space.space_id, uid) for space, on_stage in shown for uid in on_stage]
    members = {(m.space_id, m.user_id): m
               for m in Member.batch_get(member_keys)} if member_keys else {}
    return {"items": [
        {
            "space": spaces.summary(space, users),
            "people": [_on_stage(space, uid, users, members.get((space.space_id, uid)))
                       for uid in on_stage],
        }
        for space, on_stage in shown
    ]}
