"""Versions of a member's authority: what a media node acts on (role, mute, removal).

Every change of those writes `Member.authority` higher than before, with a condition on
the value read, so the versions of one member only grow. A version is the time of the
change in microseconds, or one more than the last when clocks disagree: a member who
leaves (the item goes) and joins again gets a version above any of their earlier ones,
which a node may still remember. docs/decisions/003-current-authority.md has the why."""

from __future__ import annotations

import time
from typing import Any

from pynamodb.expressions.condition import Condition

from ..platform.models import Member


def now_version() -> int:
    return time.time_ns() // 1000


def next_version(current: Any) -> int:
    """The version of the change that follows one at `current`."""
    return max(now_version(), int(current or 0) + 1)


def unchanged(member: Member) -> Condition:
    """The member's authority is still the version read with `member`."""
    if member.authority:
        return Member.authority == member.authority
    return Member.authority.does_not_exist() | (Member.authority == 0)


def bump(member: Member) -> tuple[Any, Condition]:
    """The update action that versions a change of `member`'s authority, and the
    condition that no other change came between the read and this write."""
    return Member.authority.set(next_version(member.authority)), unchanged(member)
