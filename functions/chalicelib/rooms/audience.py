"""Listeners seated through HLS, counted without touching the Space's item.

A WebRTC listener's seat is counted on the Space item (`listener_count`, with the
limits there, in one transaction). An HLS audience can be a hundred thousand people
joining within minutes: each HLS seat adds one to one of SHARDS counter items picked at
random (ListenerCount), and a read of the Space sums them. The member's item records the
shard (`listener_shard`), so a role change or a leave takes the seat off that shard."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from typing import Any

from pynamodb.exceptions import DoesNotExist

from ..platform.db import Tx, TxFailed
from ..platform.errors import Conflict
from ..platform.models import ListenerCount, Member
from . import authority

LISTENER = "listener"

# Each shard takes about 1,000 writes a second (a DynamoDB partition's), so a Space
# takes about SHARDS thousand HLS joins a second; a read is one BatchGetItem of SHARDS.
SHARDS = 16


def seat(space_id: str, user_id: str) -> Member:
    """The caller's membership; a new one is a listener counted in a shard."""
    member = _find(space_id, user_id)
    if member is not None:
        return member
    shard = random.randrange(SHARDS)
    member = Member(space_id, user_id, role=LISTENER, muted=False, invited=False,
                    joined_at=time.time(), authority=authority.now_version(),
                    listener_shard=shard)
    tx = (Tx().put("member", member, condition=Member.user_id.does_not_exist())
          .update("count", ListenerCount(space_id, shard), [ListenerCount.listeners.add(1)]))
    try:
        tx.commit()
    except TxFailed as exc:
        existing = _find(space_id, user_id)
        if existing is None:
            raise Conflict("The Space changed meanwhile; try again",
                           code="space_state_changed") from exc
        return existing
    return member


def _find(space_id: str, user_id: str) -> Member | None:
    try:
        return Member.get(space_id, user_id, consistent_read=True)
    except DoesNotExist:
        return None


def counted_on_space(member: Member) -> str | None:
    """The role whose counter on the Space item counts this member (None for a
    listener counted in a shard)."""
    return None if _in_shard(member) else str(member.role)


def release(tx: Tx, member: Member) -> list[Any]:
    """The member leaves the listener seat a shard counts (a role change, a removal,
    leaving): the shard's decrement goes into `tx`; returns the member's own actions."""
    if not _in_shard(member):
        return []
    tx.update("count", ListenerCount(member.space_id, int(member.listener_shard)),
              [ListenerCount.listeners.add(-1)])
    return [Member.listener_shard.remove()]


def _in_shard(member: Member) -> bool:
    return member.listener_shard is not None and member.role == LISTENER


def counts(space_ids: Iterable[str]) -> dict[str, int]:
    """Space id -> listeners seated through HLS."""
    ids = list(dict.fromkeys(space_ids))
    totals = dict.fromkeys(ids, 0)
    keys = [(space_id, shard) for space_id in ids for shard in range(SHARDS)]
    if keys:
        for item in ListenerCount.batch_get(keys):
            totals[item.space_id] += int(item.listeners or 0)
    return totals
