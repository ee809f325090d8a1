"""This node's entry in the node registry (DynamoDB): a heartbeat the control plane reads.

The supervisor writes it for the node as a whole (its workers together), every
HEARTBEAT_SECONDS and at once when the Spaces it can take no more listeners of change,
since that is what the control plane places relays by."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from decimal import Decimal
from typing import Any, Protocol

from ..config import Config
from ..metrics import CpuMeter

log = logging.getLogger("media_node.registry")

# The table's TTL removes the entries of nodes that died without deleting theirs; it
# must lie well past the control plane's health window (6 s) to never remove a live one.
EXPIRY_SECONDS = 120


class NodeState(Protocol):
    node_id: str
    config: Config

    @property
    def draining(self) -> bool: ...

    def room_count(self) -> int: ...

    def participant_count(self) -> int: ...

    def cpu_seconds(self) -> float: ...

    def full_spaces(self) -> list[str]: ...

    def relayed_spaces(self) -> list[str]: ...


class Registry:
    def __init__(self, table: Any, node: NodeState, command_queue_url: str) -> None:
        self._table = table
        self._node = node
        self._command_queue_url = command_queue_url
        self._cpu = CpuMeter(node.cpu_seconds)
        self.wake = asyncio.Event()

    def item(self) -> dict[str, Any]:
        node, now = self._node, time.time()
        return {
            "node_id": node.node_id,
            "url": node.config.public_url,
            "private_url": node.config.private_url,
            "command_queue_url": self._command_queue_url,
            "capacity": node.config.capacity,
            "workers": node.config.workers,
            "rooms": node.room_count(),
            "participants": node.participant_count(),
            "full_spaces": node.full_spaces(),
            "relayed_spaces": node.relayed_spaces(),
            "cpu": Decimal(str(self._cpu.read())),
            "heartbeat_at": Decimal(str(round(now, 3))),
            "draining": node.draining,
            "expires_at": int(now) + EXPIRY_SECONDS,
        }

    async def beat(self) -> None:
        item = self.item()
        await asyncio.to_thread(self._table.put_item, Item=item)

    async def run(self, interval: float) -> None:
        while True:
            self.wake.clear()
            try:
                await self.beat()
            except Exception:
                log.exception("registry heartbeat failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), interval)

    async def remove(self) -> None:
        await asyncio.to_thread(self._table.delete_item, Key={"node_id": self._node.node_id})
