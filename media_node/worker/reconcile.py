"""Reconciliation: a worker compares the rooms it holds with the control plane's tables
and repairs any drift, whatever commands were lost on the way.

Every RECONCILE_SECONDS, and before the first join of a room it opens, a worker reads
(never writes: the control plane is the only writer of room state) the Spaces it holds
and the members it has connected: an ended Space is closed, a Space that moved to
another node is closed there (its clients are told to rejoin), a removed user is
disconnected, and a newer role or mute is applied. What is read and how it is acted on
is docs/media-contract.md, section 8."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from ..authority import Authority

log = logging.getLogger("media_node.reconcile")

# BatchGetItem reads at most 100 keys per call.
BATCH_KEYS = 100
# A read that takes longer leaves the join (or the round) to what the node knows.
READ_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class SpaceState:
    state: str | None  # live | ended | scheduled; None when the Space is not there
    node_id: str | None


@dataclass(frozen=True)
class Truth:
    """What the tables said, and when the read began (monotonic)."""

    read_at: float
    spaces: dict[str, SpaceState]
    # None: the user is not a member (they left).
    members: dict[tuple[str, str], Authority | None]


class ControlPlaneTables:
    """The Spaces and Members tables, read with strongly consistent reads."""

    def __init__(self, dynamodb: Any, spaces_table: str, members_table: str) -> None:
        self._dynamodb = dynamodb
        self._spaces = spaces_table
        self._members = members_table

    def read(self, wanted: dict[str, set[str]]) -> Truth:
        """The state of each Space in `wanted` and of the given users in it."""
        read_at = time.monotonic()
        keys: list[tuple[str, dict[str, Any]]] = []
        for space_id, users in wanted.items():
            keys.append((self._spaces, {"space_id": {"S": space_id}}))
            keys += [(self._members, {"space_id": {"S": space_id}, "user_id": {"S": u}})
                     for u in sorted(users)]
        items: dict[str, list[dict[str, Any]]] = {self._spaces: [], self._members: []}
        for start in range(0, len(keys), BATCH_KEYS):
            self._get(keys[start:start + BATCH_KEYS], items)
        spaces = {space_id: SpaceState(None, None) for space_id in wanted}
        for item in items[self._spaces]:
            spaces[item["space_id"]["S"]] = SpaceState(
                item.get("state", {}).get("S"), item.get("node_id", {}).get("S"))
        members: dict[tuple[str, str], Authority | None] = {
            (space_id, user_id): None for space_id, users in wanted.items() for user_id in users
        }
        for item in items[self._members]:
            key = (item["space_id"]["S"], item["user_id"]["S"])
            members[key] = Authority(int(item.get("authority", {}).get("N", "0")),
                                     item["role"]["S"], item.get("muted", {}).get("BOOL", False))
        return Truth(read_at, spaces, members)

    def _get(self, keys: list[tuple[str, dict[str, Any]]],
             items: dict[str, list[dict[str, Any]]]) -> None:
        request: dict[str, Any] = {}
        for table, key in keys:
            projection, names = _READS[table == self._spaces]
            request.setdefault(table, {
                "Keys": [], "ConsistentRead": True,
                "ProjectionExpression": projection, "ExpressionAttributeNames": names,
            })["Keys"].append(key)
        while request:
            response = self._dynamodb.batch_get_item(RequestItems=request)
            for table, found in response.get("Responses", {}).items():
                items[table].extend(found)
            request = response.get("UnprocessedKeys") or {}


# What is read of a Space (True) and of a member (False); `state` and `role` are words
# DynamoDB reserves.
_READS: dict[bool, tuple[str, dict[str, str]]] = {
    True: ("space_id, #s, node_id", {"#s": "state"}),
    False: ("space_id, user_id, #r, muted, authority", {"#r": "role"}),
}


class Reconciled(Protocol):
    """The worker's side (worker/rooms.py's Rooms)."""

    def held(self) -> dict[str, set[str]]: ...

    async def converge(self, truth: Truth) -> None: ...


class Reconciler:
    def __init__(self, node: Reconciled, tables: ControlPlaneTables, seconds: float) -> None:
        self._node = node
        self._tables = tables
        self._seconds = seconds

    async def read(self, wanted: dict[str, set[str]]) -> Truth | None:
        """The tables' view of `wanted`; None (logged) if it cannot be had in time."""
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(self._tables.read, wanted), READ_TIMEOUT_SECONDS)
        except Exception as exc:
            log.warning("could not read the control plane's view",
                        extra={"why": f"{type(exc).__name__}: {exc}"})
            return None

    async def once(self) -> None:
        wanted = self._node.held()
        if not wanted:
            return
        truth = await self.read(wanted)
        if truth is not None:
            await self._node.converge(truth)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._seconds)
            try:
                await self.once()
            except Exception:
                log.exception("reconciliation failed")
