"""This node's entry in the node registry (DynamoDB): a heartbeat the control plane reads."""

from __future__ import annotations

import asyncio
import logging
import time
from decimal import Decimal
from typing import Any

from .metrics import CpuMeter
from .node import Node

log = logging.getLogger("media_node.registry")

# The table's TTL removes the entries of nodes that died without deleting theirs; it
# must lie well past the control plane's 15 s health window to never remove a live one.
EXPIRY_SECONDS = 120


class Registry:
    def __init__(self, table: Any, node: Node, command_queue_url: str) -> None:
        self._table = table
        self._node = node
        self._command_queue_url = command_queue_url
        self._cpu = CpuMeter()

    def item(self) -> dict[str, Any]:
        node, now = self._node, time.time()
        return {
            "node_id": node.node_id,
            "url": node.config.public_url,
            "command_queue_url": self._command_queue_url,
            "capacity": node.config.capacity,
            "rooms": node.room_count(),
            "participants": node.participant_count(),
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
            try:
                await self.beat()
            except Exception:
                log.exception("registry heartbeat failed")
            await asyncio.sleep(interval)

    async def remove(self) -> None:
        await asyncio.to_thread(self._table.delete_item, Key={"node_id": self._node.node_id})
