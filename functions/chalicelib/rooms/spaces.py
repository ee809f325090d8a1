"""A Space's lifecycle: scheduled -> live -> ended, and how Spaces are read.

One live Space per host is held by `User.live_space_id`, set in the same transaction
that makes a Space live and cleared in the one that ends it."""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Mapping
from typing import Any

from pynamodb.exceptions import DoesNotExist
from pynamodb.expressions.condition import Condition

from ..platform import pagination
from ..platform.config import settings
from ..platform.db import Tx, TxFailed
from ..platform.errors import Conflict, Forbidden, InvalidField, NotFound
from ..platform.models import HLS_PENDING, LIVE_PARTITION, Member, Space, User
from ..social import avatars, follows
from . import audience, authority, eligibility

TITLE_MAX = 70
TOPICS_MAX = 3
TOPIC_MAX_LEN = 30
SCHEDULE_HORIZON_SECONDS = 14 * 24 * 3600

SCHEDULED, LIVE, ENDED = "scheduled", "live", "ended"
HOST, CO_HOST, SPEAKER, LISTENER, REMOVED = "host", "co_host", "speaker", "listener", "removed"
STAGE_ROLES = (HOST, CO_HOST, SPEAKER)

_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_space_id() -> str:
    return "sp_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(20))


def load(space_id: str) -> Space:
    try:
        return Space.get(space_id, consistent_read=True)
    except DoesNotExist as exc:
        raise NotFound(f"No Space with id '{space_id}'", code="space_not_found") from exc


def require_live(space: Space) -> None:
    if space.state != LIVE:
        raise Conflict(f"The Space is {space.state}, not live", code="space_not_live",
                       state=space.state)


def _host_member(space_id: str, host_id: str, now: float) -> Member:
    return Member(space_id, host_id, role=HOST, muted=False, invited=False,
                  joined_at=now, stage_space_id=space_id, authority=authority.now_version())


def _go_live(tx: Tx, space: Space, now: float) -> None:
    tx.put("host_member", _host_member(space.space_id, space.host_id, now))
    tx.update("host_lock", User(space.host_id), [User.live_space_id.set(space.space_id)],
              condition=User.live_space_id.does_not_exist() & User.user_id.exists())


def _commit_going_live(tx: Tx, host: User) -> None:
    try:
        tx.commit()
    except TxFailed as exc:
        if "host_lock" in exc.failed:
            current = follows.find_user(host.user_id)
            raise Conflict("You are already hosting a live Space", code="already_hosting",
                           live_space_id=current.live_space_id if current else None) from exc
        raise Conflict("The Space changed meanwhile; reload it", code="space_state_changed") \
            from exc


def _hls_pending() -> str | None:
    """A Space going live has HLS to settle after its end, where HLS is configured."""
    return HLS_PENDING if settings().hls_bucket else None


def create(host_id: str, title: str, topics: list[str], scheduled_start: float | None,
           record: bool = False) -> Space:
    host = follows.find_user(host_id)
    eligibility.require_host_eligible(host)
    assert host is not None
    now = time.time()
    space = Space(new_space_id(), host_id=host_id, title=title, topics=topics, created_at=now,
                  co_host_count=0, speaker_count=0, listener_count=0,
                  record=True if record else None)
    if scheduled_start is not None:
        if scheduled_start <= now:
            raise InvalidField("scheduled_start", "'scheduled_start' must be in the future")
        if scheduled_start > now + SCHEDULE_HORIZON_SECONDS:
            raise InvalidField("scheduled_start",
                               "'scheduled_start' must be at most 14 days ahead")
        space.state = SCHEDULED
        space.scheduled_start = scheduled_start
        space.scheduled_host_id = host_id
        space.save(condition=Space.space_id.does_not_exist())
        return space
    space.state = LIVE
    space.started_at = now
    space.live_partition = LIVE_PARTITION
    space.stage_empty_since = now
    space.hls_pending = _hls_pending()
    tx = Tx().put("space", space, condition=Space.space_id.does_not_exist())
    _go_live(tx, space, now)
    _commit_going_live(tx, host)
    return space


def start(caller_id: str, space_id: str, record: bool | None = None) -> Space:
    """`record`: whether to keep it as a replay, if the host decides now (else as
    it was scheduled)."""
    space = load(space_id)
    if space.host_id != caller_id:
        raise Forbidden("Only the host starts a Space", code="not_host")
    if space.state != SCHEDULED:
        raise Conflict(f"The Space is {space.state}, not scheduled", code="space_not_scheduled",
                       state=space.state)
    host = follows.find_user(caller_id)
    eligibility.require_host_eligible(host)
    assert host is not None
    now = time.time()
    actions = [Space.state.set(LIVE), Space.started_at.set(now),
               Space.stage_empty_since.set(now), Space.live_partition.set(LIVE_PARTITION),
               Space.scheduled_host_id.remove()]
    if record is not None:
        actions.append(Space.record.set(True) if record else Space.record.remove())
    if _hls_pending():
        actions.append(Space.hls_pending.set(HLS_PENDING))
    tx = Tx().update("space", Space(space_id), actions, condition=Space.state == SCHEDULED)
    space.started_at = now
    _go_live(tx, space, now)
    _commit_going_live(tx, host)
    return load(space_id)


def end(caller_id: str, space_id: str) -> Space:
    """Ends the Space for its host. The media nodes hear of it from the table's stream
    (commands.py), as do the alerts (triggers.py)."""
    space = load(space_id)
    if space.host_id != caller_id:
        raise Forbidden("Only the host ends a Space", code="not_host")
    return _end(space)


def _end(space: Space, condition: Condition | None = None) -> Space:
    space_id = space.space_id
    if space.state == ENDED:
        return space
    now = time.time()
    tx = Tx().update(
        "space", Space(space_id),
        [Space.state.set(ENDED), Space.ended_at.set(now), Space.live_partition.remove(),
         Space.scheduled_host_id.remove(), Space.stage_empty_since.remove()],
        condition=(Space.state == space.state) & condition if condition is not None
        else Space.state == space.state)
    if space.state == LIVE:
        tx.update("host_lock", User(space.host_id), [User.live_space_id.remove()],
                  condition=User.live_space_id == space_id)
    try:
        tx.commit()
    except TxFailed:
        space = load(space_id)
        if space.state == ENDED:
            return space
        raise Conflict("The Space changed meanwhile; try again", code="space_state_changed") \
            from None
    return load(space_id)


def end_as_abandoned(space: Space, still: Condition) -> Space:
    """Ends a Space that nobody on stage is connected to, as its host would, if `still`
    holds (someone who came back meanwhile keeps it live: 409)."""
    return _end(space, still)


def _people(user_ids: list[str]) -> dict[str, User]:
    return {u.user_id: u for u in User.batch_get(user_ids)} if user_ids else {}


def _person(user_id: str, people: Mapping[str, User]) -> dict[str, Any]:
    user = people.get(user_id)
    return {
        "user_id": user_id,
        "handle": user.handle if user else None,
        "display_name": user.display_name if user else None,
        "avatar_url": avatars.url_of(user.avatar_key) if user else None,
    }


def summary(space: Space, people: Mapping[str, User] | None = None,
            hls_listeners: Mapping[str, int] | None = None) -> dict[str, Any]:
    """`hls_listeners`: Space id -> listeners seated through HLS (audience.py), read
    for this Space alone when not given."""
    people = people if people is not None else _people([space.host_id])
    if hls_listeners is None:
        hls_listeners = _hls_listeners([space])
    return {
        "space_id": space.space_id,
        "title": space.title,
        "topics": list(space.topics or []),
        "state": space.state,
        "host": _person(space.host_id, people),
        "scheduled_start": space.scheduled_start,
        "started_at": space.started_at,
        "ended_at": space.ended_at,
        "co_host_count": int(space.co_host_count),
        "speaker_count": int(space.speaker_count),
        "listener_count": int(space.listener_count) + hls_listeners.get(space.space_id, 0),
    }


def _hls_listeners(spaces: list[Space]) -> dict[str, int]:
    live = [s.space_id for s in spaces if s.state == LIVE]
    return audience.counts(live) if live and settings().hls_bucket else {}


def member_view(member: Member | None) -> dict[str, Any] | None:
    if member is None:
        return None
    return {
        "role": member.role,
        "muted": bool(member.muted),
        "requested_to_speak": member.requested_at is not None,
        "invited_to_speak": bool(member.invited),
    }


def find_member(space_id: str, user_id: str) -> Member | None:
    try:
        return Member.get(space_id, user_id, consistent_read=True)
    except DoesNotExist:
        return None


def detail(space: Space, viewer_id: str) -> dict[str, Any]:
    stage = list(Member.stage.query(space.space_id))
    people = _people(list({space.host_id, *(m.user_id for m in stage)}))
    order = {HOST: 0, CO_HOST: 1, SPEAKER: 2}
    stage.sort(key=lambda m: (order.get(m.role, 3), m.joined_at))
    view = summary(space, people)
    view["stage"] = [
        {**_person(m.user_id, people), "role": m.role, "muted": bool(m.muted)} for m in stage
    ]
    view["me"] = member_view(find_member(space.space_id, viewer_id))
    return view


_LIVE_KEYS = {"space_id": "S", "live_partition": "S", "started_at": "N"}
_SCHEDULED_KEYS = {"space_id": "S", "scheduled_host_id": "S", "scheduled_start": "N"}


def list_live(query: Mapping[str, str] | None) -> dict[str, Any]:
    cursor = pagination.decode(query, _LIVE_KEYS, {"live_partition": LIVE_PARTITION})
    result = Space.live.query(LIVE_PARTITION, scan_index_forward=False,
                              limit=pagination.limit(query), last_evaluated_key=cursor)
    spaces = list(result)
    people = _people(list({s.host_id for s in spaces}))
    counts = _hls_listeners(spaces)
    return pagination.page([summary(s, people, counts) for s in spaces],
                           result.last_evaluated_key)


def list_scheduled(user_id: str, query: Mapping[str, str] | None) -> dict[str, Any]:
    follows.get_user(user_id)
    cursor = pagination.decode(query, _SCHEDULED_KEYS, {"scheduled_host_id": user_id})
    result = Space.scheduled.query(user_id, limit=pagination.limit(query),
                                   last_evaluated_key=cursor)
    spaces = list(result)
    people = _people([user_id])
    return pagination.page([summary(s, people, {}) for s in spaces], result.last_evaluated_key)
