"""What a user wants to hear about: accounts they blocked or muted, and push on or off.

A block or a mute keeps that account's Spaces out of the user's bar and its alerts off
their devices. Push off keeps the bar and the live updates, and sends no notification."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from ..platform import pagination
from ..platform.errors import InvalidField
from ..platform.models import AlertSettings, Restriction, User
from . import follows

BLOCK, MUTE = "block", "mute"


def _key(kind: str, target_id: str) -> str:
    return f"{kind}#{target_id}"


def restrict(user_id: str, kind: str, target_id: str) -> dict[str, Any]:
    """Idempotent: blocking or muting again changes nothing."""
    if user_id == target_id:
        raise InvalidField("user_id", f"You cannot {kind} yourself")
    target = follows.get_user(target_id)
    Restriction(user_id, _key(kind, target_id), kind=kind, target_id=target_id,
                created_at=time.time()).save()
    if kind == BLOCK:
        # A block parts the two accounts: neither follows the other any more.
        follows.unfollow(target_id, user_id)
        follows.unfollow(user_id, target_id)
        target = follows.get_user(target_id)
    return {"user": follows.profile_view(target), _flag(kind): True}


def unrestrict(user_id: str, kind: str, target_id: str) -> dict[str, Any]:
    target = follows.get_user(target_id)
    Restriction(user_id, _key(kind, target_id)).delete()
    return {"user": follows.profile_view(target), _flag(kind): False}


def _flag(kind: str) -> str:
    return "blocked" if kind == BLOCK else "muted"


_RESTRICTION_KEYS = {"user_id": "S", "target_key": "S"}


def listed(user_id: str, kind: str, query: Mapping[str, str] | None) -> dict[str, Any]:
    cursor = pagination.decode(query, _RESTRICTION_KEYS, {"user_id": user_id})
    if cursor is not None and not cursor["target_key"]["S"].startswith(f"{kind}#"):
        raise InvalidField("cursor", "'cursor' is not a cursor from this list")
    result = Restriction.query(user_id, Restriction.target_key.startswith(f"{kind}#"),
                               limit=pagination.limit(query), last_evaluated_key=cursor)
    ids = [r.target_id for r in result]
    found = {u.user_id: u for u in User.batch_get(ids)} if ids else {}
    items = [follows.profile_view(found[uid]) for uid in ids if uid in found]
    return pagination.page(items, result.last_evaluated_key)


def is_blocked(user_id: str, target_id: str) -> bool:
    """Whether `user_id` blocked `target_id`: then the target cannot follow them, join
    their Spaces or ask to speak in them."""
    try:
        Restriction.get(user_id, _key(BLOCK, target_id), consistent_read=True)
    except Restriction.DoesNotExist:
        return False
    return True


def restricted_by_user(user_id: str) -> set[str]:
    """Every account the user blocked or muted (the bar filters with it)."""
    return {r.target_id for r in Restriction.query(user_id)}


def restricting(targets: Iterable[str], first: str, last: str) -> set[str]:
    """Users with ids from `first` to `last` who blocked or muted any of `targets`: one
    query per target, bounded to the slice of ids one page of recipients covers."""
    found: set[str] = set()
    for target in set(targets):
        for item in Restriction.restricted_by.query(
                target, Restriction.user_id.between(first, last)):
            found.add(item.user_id)
    return found


def settings_view(user_id: str) -> dict[str, Any]:
    try:
        current = AlertSettings.get(user_id, consistent_read=True)
    except AlertSettings.DoesNotExist:
        return {"push_enabled": True}
    return {"push_enabled": current.push_enabled is not False}


def set_push(user_id: str, enabled: bool) -> dict[str, Any]:
    AlertSettings(user_id).update(actions=[AlertSettings.push_enabled.set(enabled)])
    return {"push_enabled": enabled}
