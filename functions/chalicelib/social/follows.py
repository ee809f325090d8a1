"""Profiles and the follow graph. Follower counts change only in the same transaction
as the follow item, so they stay exact under any number of concurrent follows."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from pynamodb.exceptions import DoesNotExist

from ..platform import pagination
from ..platform.db import Tx, TxFailed
from ..platform.errors import Conflict, Forbidden, InvalidField, NotFound
from ..platform.models import Follow, Handle, User
from . import avatars

HANDLE = re.compile(r"[A-Za-z0-9_]{1,15}")
DISPLAY_NAME_MAX = 50


def profile_view(user: User) -> dict[str, Any]:
    return {
        "user_id": user.user_id,
        "handle": user.handle,
        "display_name": user.display_name,
        "follower_count": int(user.follower_count),
        "following_count": int(user.following_count),
        "suspended": bool(user.suspended),
        "bio": user.bio,
        "avatar_url": avatars.url_of(user.avatar_key),
        "live_space_id": user.live_space_id,
    }


def find_user(user_id: str) -> User | None:
    try:
        return User.get(user_id, consistent_read=True)
    except DoesNotExist:
        return None


def get_user(user_id: str) -> User:
    user = find_user(user_id)
    if user is None:
        raise NotFound(f"No user with id '{user_id}'", code="user_not_found")
    return user


def require_profile(user_id: str) -> User:
    user = find_user(user_id)
    if user is None:
        raise Conflict("Create your profile first (PUT /me)", code="profile_required")
    return user


def user_by_handle(handle: str) -> User:
    if not HANDLE.fullmatch(handle):
        raise InvalidField("handle", "'handle' is 1 to 15 letters, digits or underscores")
    try:
        claim = Handle.get(handle.lower(), consistent_read=True)
    except DoesNotExist as exc:
        raise NotFound(f"No user with handle '@{handle}'", code="user_not_found") from exc
    return get_user(claim.user_id)


def put_profile(user_id: str, handle: str, display_name: str) -> User:
    """Creates the caller's profile, or changes its handle and display name."""
    existing = find_user(user_id)
    key = handle.lower()
    tx = Tx()
    if existing is None:
        user = User(user_id, handle=handle, display_name=display_name,
                    follower_count=0, following_count=0, suspended=False,
                    created_at=time.time())
        tx.put("user", user, condition=User.user_id.does_not_exist())
        tx.put("handle", Handle(key, user_id=user_id), condition=Handle.handle_key.does_not_exist())
    else:
        actions = [User.handle.set(handle), User.display_name.set(display_name)]
        tx.update("user", User(user_id), actions,
                  condition=User.handle == existing.handle)
        if existing.handle.lower() != key:
            tx.delete("old_handle", Handle(existing.handle.lower()),
                      condition=Handle.user_id == user_id)
            tx.put("handle", Handle(key, user_id=user_id),
                   condition=Handle.handle_key.does_not_exist())
    try:
        tx.commit()
    except TxFailed as exc:
        if "handle" in exc.failed:
            raise Conflict(f"The handle '@{handle}' is taken", code="handle_taken") from exc
        raise Conflict("The profile changed meanwhile; try again", code="concurrent_update") \
            from exc
    return get_user(user_id)


def set_suspended(admin_is_caller: bool, user_id: str, suspended: bool) -> User:
    if not admin_is_caller:
        raise Forbidden("Only administrators suspend accounts", code="not_admin")
    try:
        User(user_id).update(actions=[User.suspended.set(suspended)],
                             condition=User.user_id.exists())
    except Exception as exc:
        if find_user(user_id) is None:
            raise NotFound(f"No user with id '{user_id}'", code="user_not_found") from exc
        raise
    return get_user(user_id)


def set_hosting_allowed(admin_is_caller: bool, user_id: str, allowed: bool) -> User:
    """Puts a user on the host allowlist or takes them off it."""
    if not admin_is_caller:
        raise Forbidden("Only administrators decide who may host", code="not_admin")
    try:
        User(user_id).update(actions=[User.hosting_allowed.set(allowed)],
                             condition=User.user_id.exists())
    except Exception as exc:
        if find_user(user_id) is None:
            raise NotFound(f"No user with id '{user_id}'", code="user_not_found") from exc
        raise
    return get_user(user_id)


def follow(follower_id: str, followee_id: str, blocked: bool = False) -> None:
    """Idempotent: following someone you already follow changes nothing. `blocked`: the
    followee blocked the follower, who then may not follow them."""
    if follower_id == followee_id:
        raise InvalidField("user_id", "You cannot follow yourself")
    if blocked:
        raise Forbidden("This account has blocked you", code="blocked")
    tx = (
        Tx()
        .put("follow", Follow(follower_id, followee_id, created_at=time.time()),
             condition=Follow.follower_id.does_not_exist())
        .update("followee", User(followee_id), [User.follower_count.add(1)],
                condition=User.user_id.exists())
        .update("follower", User(follower_id), [User.following_count.add(1)],
                condition=User.user_id.exists())
    )
    try:
        tx.commit()
    except TxFailed as exc:
        if "followee" in exc.failed:
            raise NotFound(f"No user with id '{followee_id}'", code="user_not_found") from exc
        if "follower" in exc.failed:
            raise Conflict("Create your profile first (PUT /me)",
                           code="profile_required") from exc
        # Only the follow item's condition failed: already following.


def unfollow(follower_id: str, followee_id: str) -> None:
    """Idempotent: unfollowing someone you do not follow changes nothing."""
    if follower_id == followee_id:
        # One transaction cannot touch the same user twice, and nobody follows themself.
        raise InvalidField("user_id", "You cannot unfollow yourself")
    tx = (
        Tx()
        .delete("follow", Follow(follower_id, followee_id),
                condition=Follow.follower_id.exists())
        .update("followee", User(followee_id), [User.follower_count.add(-1)],
                condition=User.user_id.exists())
        .update("follower", User(follower_id), [User.following_count.add(-1)],
                condition=User.user_id.exists())
    )
    try:
        tx.commit()
    except TxFailed as exc:
        if "follow" in exc.failed:
            return
        raise NotFound(f"No user with id '{followee_id}'", code="user_not_found") from exc


_FOLLOW_KEYS = {"follower_id": "S", "followee_id": "S"}


def _profiles(user_ids: list[str]) -> list[dict[str, Any]]:
    found = {u.user_id: u for u in User.batch_get(user_ids)} if user_ids else {}
    return [profile_view(found[uid]) for uid in user_ids if uid in found]


def followers(user_id: str, query: Mapping[str, str] | None) -> dict[str, Any]:
    get_user(user_id)
    cursor = pagination.decode(query, _FOLLOW_KEYS, {"followee_id": user_id})
    result = Follow.followers.query(user_id, limit=pagination.limit(query),
                                    last_evaluated_key=cursor)
    ids = [f.follower_id for f in result]
    return pagination.page(_profiles(ids), result.last_evaluated_key)


def following(user_id: str, query: Mapping[str, str] | None) -> dict[str, Any]:
    get_user(user_id)
    cursor = pagination.decode(query, _FOLLOW_KEYS, {"follower_id": user_id})
    result = Follow.query(user_id, limit=pagination.limit(query), last_evaluated_key=cursor)
    ids = [f.followee_id for f in result]
    return pagination.page(_profiles(ids), result.last_evaluated_key)


def is_following(follower_id: str, followee_id: str) -> bool:
    try:
        Follow.get(follower_id, followee_id)
    except DoesNotExist:
        return False
    return True
