"""Who does what in a live Space: requests to speak, approvals, invitations, co-hosts,
mutes, removals, leaving.

Every move between roles is one transaction: the member's item (with a condition on
the role and the authority version read a moment before) and the Space's counters (with
a condition on the limit). Many concurrent approvals therefore never seat more than ten
speakers.

Nothing here tells the media node: what it must act on (role, mute, removal) is derived
from the committed member item by the dispatcher on the table's stream (commands.py)."""

from __future__ import annotations

import time
from typing import Any

from pynamodb.attributes import NumberAttribute
from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.condition import Condition

from ..platform.db import Tx, TxFailed
from ..platform.errors import Conflict, Forbidden, InvalidField, NotFound
from ..platform.models import Member, Space
from ..social import preferences
from . import audience, authority, spaces
from .spaces import CO_HOST, HOST, LISTENER, REMOVED, SPEAKER, STAGE_ROLES

MAX_CO_HOSTS = 2
MAX_SPEAKERS = 10

_COUNTERS: dict[str, NumberAttribute] = {
    CO_HOST: Space.co_host_count,
    SPEAKER: Space.speaker_count,
    LISTENER: Space.listener_count,
}
_LIMITS: dict[str, tuple[int, str, str]] = {
    CO_HOST: (MAX_CO_HOSTS, "co_host_limit", f"This Space already has {MAX_CO_HOSTS} co-hosts"),
    SPEAKER: (MAX_SPEAKERS, "speaker_limit", f"This Space already has {MAX_SPEAKERS} speakers"),
}
MODERATORS = (HOST, CO_HOST)


def _counter_actions(from_role: str | None, to_role: str | None) -> list[Any]:
    actions = []
    if from_role in _COUNTERS:
        actions.append(_COUNTERS[from_role].add(-1))
    if to_role in _COUNTERS:
        actions.append(_COUNTERS[to_role].add(1))
    return actions


def _space_condition(to_role: str | None) -> Condition:
    condition = Space.state == spaces.LIVE
    if to_role in _LIMITS:
        condition &= _COUNTERS[to_role] < _LIMITS[to_role][0]
    return condition


def _raise_space_failure(space_id: str, to_role: str | None) -> None:
    space = spaces.load(space_id)
    spaces.require_live(space)
    if to_role in _LIMITS:
        _, code, message = _LIMITS[to_role]
        raise Conflict(message, code=code)
    raise Conflict("The Space changed meanwhile; try again", code="space_state_changed")


def _move(member: Member, to_role: str, *, member_condition: Condition | None = None) -> None:
    """Moves `member` from the role it was read with to `to_role`."""
    space_id = member.space_id
    version, unchanged = authority.bump(member)
    actions: list[Any] = [
        Member.role.set(to_role),
        Member.requested_at.remove(),
        Member.request_space_id.remove(),
        Member.invited.set(False),
        version,
    ]
    if to_role in STAGE_ROLES:
        actions.append(Member.stage_space_id.set(space_id))
    else:
        actions += [Member.stage_space_id.remove(), Member.muted.set(False)]
    condition = (Member.role == member.role) & unchanged
    if member_condition is not None:
        condition &= member_condition
    # A listener seated through HLS is counted in a shard, not on the Space.
    space_actions = _counter_actions(audience.counted_on_space(member), to_role)
    # Keep "speaking in the Space" (connected and on stage) in step with the role.
    if to_role not in STAGE_ROLES:
        space_actions.append(Space.on_stage_connected.delete({member.user_id}))
    elif member.connected:
        space_actions.append(Space.on_stage_connected.add({member.user_id}))
        condition &= Member.connected == True  # noqa: E712
    tx = Tx()
    actions += audience.release(tx, member)
    tx.update("member", Member(space_id, member.user_id), actions, condition=condition)
    if space_actions:
        tx.update("space", Space(space_id), space_actions,
                  condition=_space_condition(to_role))
    else:
        tx.check("space", Space, space_id, condition=_space_condition(None))
    try:
        tx.commit()
    except TxFailed as exc:
        if "space" in exc.failed:
            _raise_space_failure(space_id, to_role)
        raise Conflict("Their place in the Space changed meanwhile; reload it",
                       code="member_state_changed") from exc


def _live_space(space_id: str) -> Space:
    space = spaces.load(space_id)
    spaces.require_live(space)
    return space


def _member(space_id: str, user_id: str) -> Member:
    member = spaces.find_member(space_id, user_id)
    if member is None or member.role == REMOVED:
        raise NotFound("That user is not in this Space", code="member_not_found")
    return member


def _self(space_id: str, user_id: str) -> Member:
    member = spaces.find_member(space_id, user_id)
    if member is not None and member.role == REMOVED:
        raise Forbidden("You were removed from this Space", code="removed")
    if member is None:
        raise Conflict("Join the Space first (POST /spaces/{id}/join)", code="not_joined")
    return member


def _moderator(space_id: str, user_id: str) -> Member:
    member = spaces.find_member(space_id, user_id)
    if member is None or member.role not in MODERATORS:
        raise Forbidden("Only the host and co-hosts do this", code="not_moderator")
    return member


def _not_self(actor_id: str, target_id: str) -> None:
    if actor_id == target_id:
        raise InvalidField("user_id", "This acts on another participant, not on yourself")


def _result(space_id: str, user_id: str) -> dict[str, Any]:
    member = spaces.find_member(space_id, user_id)
    return {"space_id": space_id, "user_id": user_id, **(spaces.member_view(member) or {})}


def _changed_meanwhile() -> Conflict:
    return Conflict("Their place in the Space changed meanwhile; reload it",
                    code="member_state_changed")


def _update_member(member: Member, actions: list[Any], condition: Condition) -> None:
    """One conditional write of a member read a moment before; a member who left or
    changed meanwhile is never recreated or overwritten."""
    try:
        Member(member.space_id, member.user_id).update(
            actions=actions, condition=Member.user_id.exists() & condition)
    except UpdateError as exc:
        if spaces.find_member(member.space_id, member.user_id) is None:
            raise NotFound("That user is not in this Space", code="member_not_found") from exc
        raise _changed_meanwhile() from exc


def request_to_speak(space_id: str, user_id: str) -> dict[str, Any]:
    space = _live_space(space_id)
    if preferences.is_blocked(space.host_id, user_id):
        raise Forbidden("The host has blocked you", code="blocked")
    member = _self(space_id, user_id)
    if member.role != LISTENER:
        raise Conflict("You are already on stage", code="already_speaker")
    if member.requested_at is None:
        now = time.time()
        try:
            Member(space_id, user_id).update(
                actions=[Member.requested_at.set(now), Member.request_space_id.set(space_id)],
                condition=(Member.role == LISTENER) & Member.requested_at.does_not_exist())
        except Exception:
            current = spaces.find_member(space_id, user_id)
            if current is None or current.role != LISTENER:
                raise Conflict("Your place in the Space changed meanwhile",
                               code="member_state_changed") from None
    return _result(space_id, user_id)


def cancel_request(space_id: str, user_id: str) -> dict[str, Any]:
    _self(space_id, user_id)
    Member(space_id, user_id).update(
        actions=[Member.requested_at.remove(), Member.request_space_id.remove()],
        condition=Member.user_id.exists())
    return _result(space_id, user_id)


def list_requests(space_id: str, caller_id: str) -> dict[str, Any]:
    _live_space(space_id)
    _moderator(space_id, caller_id)
    pending = list(Member.requests.query(space_id))
    people = spaces._people([m.user_id for m in pending])
    return {"items": [
        {**spaces._person(m.user_id, people), "requested_at": m.requested_at} for m in pending
    ]}


def approve(space_id: str, actor_id: str, target_id: str) -> dict[str, Any]:
    _live_space(space_id)
    _moderator(space_id, actor_id)
    target = _member(space_id, target_id)
    if target.role != LISTENER or target.requested_at is None:
        raise Conflict("That user has no pending request to speak", code="no_request")
    _move(target, SPEAKER, member_condition=Member.requested_at.exists())
    return _result(space_id, target_id)


def deny(space_id: str, actor_id: str, target_id: str) -> dict[str, Any]:
    _live_space(space_id)
    _moderator(space_id, actor_id)
    target = _member(space_id, target_id)
    if target.requested_at is None:
        raise Conflict("That user has no pending request to speak", code="no_request")
    _update_member(target, [Member.requested_at.remove(), Member.request_space_id.remove()],
                   (Member.role == target.role) & Member.requested_at.exists())
    return _result(space_id, target_id)


def invite(space_id: str, actor_id: str, target_id: str) -> dict[str, Any]:
    _live_space(space_id)
    _moderator(space_id, actor_id)
    target = _member(space_id, target_id)
    if target.role != LISTENER:
        raise Conflict("That user is already on stage", code="already_speaker")
    Member(space_id, target_id).update(actions=[Member.invited.set(True)],
                                       condition=Member.role == LISTENER)
    return _result(space_id, target_id)


def answer_invitation(space_id: str, user_id: str, accept: bool) -> dict[str, Any]:
    _live_space(space_id)
    member = _self(space_id, user_id)
    if member.role != LISTENER or not member.invited:
        raise Conflict("You have no invitation to speak", code="no_invitation")
    invited = Member.invited == True  # noqa: E712
    if accept:
        _move(member, SPEAKER, member_condition=invited)
    else:
        _update_member(member, [Member.invited.set(False)], (Member.role == LISTENER) & invited)
    return _result(space_id, user_id)


def demote(space_id: str, actor_id: str, target_id: str) -> dict[str, Any]:
    """Moves someone from the stage to the audience; anyone on stage may step down."""
    _live_space(space_id)
    target = _member(space_id, target_id)
    if target.role == HOST:
        raise Forbidden("The host cannot be demoted", code="target_is_host")
    if actor_id != target_id:
        actor = _moderator(space_id, actor_id)
        if target.role == CO_HOST and actor.role != HOST:
            raise Forbidden("Only the host demotes a co-host", code="not_host")
    if target.role not in (SPEAKER, CO_HOST):
        raise Conflict("That user is not on stage", code="not_on_stage")
    _move(target, LISTENER)
    return _result(space_id, target_id)


def add_co_host(space_id: str, actor_id: str, target_id: str) -> dict[str, Any]:
    space = _live_space(space_id)
    if space.host_id != actor_id:
        raise Forbidden("Only the host adds co-hosts", code="not_host")
    _not_self(actor_id, target_id)
    target = _member(space_id, target_id)
    if target.role == CO_HOST:
        return _result(space_id, target_id)
    _move(target, CO_HOST)
    return _result(space_id, target_id)


def _set_muted(member: Member, muted: bool) -> None:
    """Mutes or unmutes someone on stage, as a new version of their authority."""
    version, unchanged = authority.bump(member)
    _update_member(member, [Member.muted.set(muted), version],
                   (Member.role == member.role) & unchanged)


def mute(space_id: str, actor_id: str, target_id: str) -> dict[str, Any]:
    _live_space(space_id)
    actor = _moderator(space_id, actor_id)
    target = _member(space_id, target_id)
    if target.role not in STAGE_ROLES:
        raise Conflict("That user is not on stage", code="not_on_stage")
    if target.role == HOST and actor.role != HOST:
        raise Forbidden("Co-hosts cannot mute the host", code="target_is_host")
    _set_muted(target, True)
    return _result(space_id, target_id)


def set_own_mute(space_id: str, user_id: str, muted: bool) -> dict[str, Any]:
    """A participant on stage mutes or unmutes themself; only they can unmute."""
    _live_space(space_id)
    member = _self(space_id, user_id)
    if member.role not in STAGE_ROLES:
        raise Conflict("Only people on stage have a microphone", code="not_on_stage")
    _set_muted(member, muted)
    return _result(space_id, user_id)


# A member whose authority changes under mute_all is read again and tried this often.
MUTE_ALL_ATTEMPTS = 3


def _mute_on_stage(space_id: str, member: Member) -> str | None:
    """Mutes one member of the stage; None when done (or nothing to do), else why not."""
    for _ in range(MUTE_ALL_ATTEMPTS):
        if member.role not in STAGE_ROLES:
            return None
        if member.muted:
            return None
        try:
            _set_muted(member, True)
            return None
        except NotFound:
            return None
        except Conflict:
            current = spaces.find_member(space_id, member.user_id)
            if current is None:
                return None
            member = current
    return "member_state_changed"


def mute_all(space_id: str, actor_id: str) -> dict[str, Any]:
    """Mutes everyone on stage but the caller and the host. Each member is one
    conditional write, tried again on a concurrent change; whoever could not be muted
    is listed with the reason, and nobody is muted without the node hearing of it
    (commands come from the committed items)."""
    space = _live_space(space_id)
    _moderator(space_id, actor_id)
    muted, not_muted = [], []
    for member in Member.stage.query(space_id):
        if member.user_id in (actor_id, space.host_id) or member.muted:
            continue
        why = _mute_on_stage(space_id, member)
        if why is None:
            muted.append(member.user_id)
        else:
            not_muted.append({"user_id": member.user_id, "error": why})
    return {"space_id": space_id, "muted": muted, "not_muted": not_muted}


def remove(space_id: str, actor_id: str, target_id: str) -> dict[str, Any]:
    """Removes someone, who then cannot rejoin this Space. Works before they join too."""
    space = _live_space(space_id)
    actor = _moderator(space_id, actor_id)
    _not_self(actor_id, target_id)
    if target_id == space.host_id:
        raise Forbidden("The host cannot be removed", code="target_is_host")
    target = spaces.find_member(space_id, target_id)
    if target is not None and target.role == REMOVED:
        return _result(space_id, target_id)
    if target is not None and target.role == CO_HOST and actor.role != HOST:
        raise Forbidden("Only the host removes a co-host", code="not_host")
    if target is None:
        try:
            Member(space_id, target_id, role=REMOVED, joined_at=time.time(),
                   authority=authority.now_version()).save(
                condition=Member.user_id.does_not_exist())
        except PutError as exc:
            raise _changed_meanwhile() from exc
    else:
        _move(target, REMOVED)
    return _result(space_id, target_id)


def leave(space_id: str, user_id: str) -> dict[str, Any]:
    """Leaving as the host ends the Space; anyone else just goes."""
    space = spaces.load(space_id)
    if space.host_id == user_id:
        ended = spaces.end(user_id, space_id)
        return {"space_id": space_id, "left": True, "state": ended.state}
    member = spaces.find_member(space_id, user_id)
    if member is None or member.role == REMOVED or space.state != spaces.LIVE:
        return {"space_id": space_id, "left": True, "state": space.state}
    tx = Tx().delete("member", Member(space_id, user_id), condition=Member.role == member.role)
    audience.release(tx, member)
    space_actions = _counter_actions(audience.counted_on_space(member), None)
    space_actions.append(Space.on_stage_connected.delete({user_id}))
    if space_actions:
        tx.update("space", Space(space_id), space_actions)
    try:
        tx.commit()
    except TxFailed as exc:
        raise Conflict("Your place in the Space changed meanwhile; try again",
                       code="member_state_changed") from exc
    return {"space_id": space_id, "left": True, "state": space.state}
