"""The node: its rooms, its admission rules and its draining state."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .config import Config
from .events import MediaEvents
from .metrics import Counters
from .room import Participant, Room
from .signaling import SignalingError
from .tokens import JoinClaims, TokenVerifier

log = logging.getLogger("media_node.node")

# Longer than any join token lives (about a minute, plus clock leeway).
REFUSAL_MEMORY_SECONDS = 600


class Node:
    def __init__(self, config: Config, events: MediaEvents) -> None:
        self.config = config
        self.node_id = config.node_id
        self.verifier = TokenVerifier(config.join_token_public_key, config.node_id)
        self.events = events
        self.counters = Counters()
        self.rooms: dict[str, Room] = {}
        self.draining = False
        self._ended: dict[str, float] = {}
        self._removed: dict[tuple[str, str], float] = {}

    def room_count(self) -> int:
        return len(self.rooms)

    def participant_count(self) -> int:
        return sum(len(room.participants) for room in self.rooms.values())

    def participants(self) -> list[Participant]:
        return [p for room in self.rooms.values() for p in room.participants.values()]

    async def inbound_totals(self) -> tuple[int, int]:
        received = lost = 0
        for participant in self.participants():
            for receiver in participant.pc.getReceivers():
                for stats in (await receiver.getStats()).values():
                    if stats.type == "inbound-rtp":
                        received += stats.packetsReceived
                        lost += stats.packetsLost
        return received, lost

    def outbound_totals(self) -> tuple[int, float]:
        reports = 0
        fractions = []
        for participant in self.participants():
            stream = participant.stream
            if stream is None:
                continue
            reports += stream.native.receiver_reports
            if stream.native.fraction_lost is not None:
                fractions.append(stream.native.fraction_lost)
        return reports, sum(fractions) / len(fractions) if fractions else 0.0

    def open_room(self, claims: JoinClaims) -> Room:
        """The Space's room on this node, opened if need be and if the node may."""
        space_id = claims.space_id
        self._forget_old_refusals()
        ended = self._ended.get(space_id)
        if ended is not None and claims.issued_at <= ended:
            raise SignalingError(410, "space_ended", "this Space has ended")
        removed = self._removed.get((space_id, claims.user_id))
        if removed is not None and claims.issued_at <= removed:
            raise SignalingError(403, "removed", "you were removed from this Space")
        room = self.rooms.get(space_id)
        if room is None and self.draining:
            raise SignalingError(503, "draining", "this node is draining and opens no new rooms")
        if self.participant_count() >= self.config.capacity:
            raise SignalingError(503, "full", "this node is at capacity")
        if room is None:
            room = Room(space_id, self.events, self.counters, self._room_closed, self.config.fanout)
            self.rooms[space_id] = room
            log.info("room opened", extra={"space_id": space_id})
        return room

    def refuse_earlier_tokens(self, space_id: str, user_id: str | None = None) -> None:
        """After "end" (or "remove"), tokens minted before it no longer admit anyone.

        A join token lives about a minute: without this, one minted just before the
        command would reopen the Space (or bring the removed user back).
        """
        now = time.time()
        if user_id is None:
            self._ended[space_id] = now
        else:
            self._removed[(space_id, user_id)] = now

    def _forget_old_refusals(self) -> None:
        horizon = time.time() - REFUSAL_MEMORY_SECONDS
        self._ended = {k: t for k, t in self._ended.items() if t > horizon}
        self._removed = {k: t for k, t in self._removed.items() if t > horizon}

    def _room_closed(self, room: Room) -> None:
        if self.rooms.get(room.space_id) is room:
            del self.rooms[room.space_id]
            log.info("room closed", extra={"space_id": room.space_id})

    def find_session(self, space_id: str, session_id: str) -> Participant | None:
        room = self.rooms.get(space_id)
        return room.participants.get(session_id) if room is not None else None

    def start_draining(self) -> None:
        if self.draining:
            return
        self.draining = True
        log.info("draining", extra={"rooms": self.room_count()})
        self.events.publish("node_draining")

    async def wait_until_empty(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.rooms and loop.time() < deadline:
            await asyncio.sleep(0.2)
        return not self.rooms

    async def close_all_rooms(self) -> None:
        notice: dict[str, Any] = {"type": "node_closing"}
        await asyncio.gather(
            *(room.end(notice, reason="node_closing") for room in list(self.rooms.values()))
        )
