"""A worker's rooms, its admission rules and its draining state.

Each worker process of a node (supervisor.py starts them) has one `Node`: the rooms it
owns (it mixes them) and the rooms it relays (relay.py). What is per node, not per
worker (capacity, one use of a join token, placement), is the front's (front.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .config import Config
from .events import MediaEvents
from .metrics import Counters
from .refusals import Refusals
from .relay import FeedSource, FeedUnavailable, RelayRoom
from .room import Participant, Room
from .sessions import new_session_id
from .signaling import SignalingError
from .tokens import JoinClaims, TokenVerifier
from .udp_mux import UdpMux

log = logging.getLogger("media_node.node")

class Node:
    def __init__(self, config: Config, events: MediaEvents, worker: int = 0) -> None:
        self.config = config
        self.node_id = config.node_id
        self.worker = worker
        self.verifier = TokenVerifier(config.join_token_public_key, config.node_id)
        self.events = events
        self.counters = Counters()
        # The worker's ICE sockets, once it has bound them; None gives each peer
        # aioice's own.
        self.udp_mux: UdpMux | None = None
        self.rooms: dict[str, Room] = {}
        self.draining = False
        self._refusals = Refusals()

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

    def new_session_id(self) -> str:
        return new_session_id(self.node_id, self.worker)

    async def open_room(self, claims: JoinClaims, feed: FeedSource | None = None) -> Room:
        """The Space's room in this worker, opened if need be and if the worker may:
        a room it mixes, or with `feed` (the front says where from) a room it relays."""
        space_id = claims.space_id
        self._refusals.check(claims)
        room = self.rooms.get(space_id)
        if room is None and self.draining:
            raise SignalingError(503, "draining", "this node is draining and opens no new rooms")
        if claims.may_publish and (isinstance(room, RelayRoom) or (room is None and feed)):
            # Speakers publish into the mix, which is made where the Space is owned.
            raise SignalingError(403, "wrong_node", "speakers join the Space where it is mixed")
        if room is None:
            config = self.config
            if feed is None:
                room = Room(space_id, self.events, self.counters, self._room_closed, config.fanout)
            else:
                room = RelayRoom(space_id, self.events, self.counters, self._room_closed,
                                 config.fanout, feed, self, config.host)
            self.rooms[space_id] = room
            log.info("room opened", extra={"space_id": space_id, "relay": feed is not None})
        if isinstance(room, RelayRoom):
            try:
                await room.ready()
            except FeedUnavailable as exc:
                log.warning("no feed to relay", extra={"space_id": space_id, "why": str(exc)})
                raise SignalingError(
                    503, "relay_unavailable", "the Space's audio cannot be relayed; try again"
                ) from None
            if room.closed:
                # Another join, refused, closed the room while this one waited for it.
                raise SignalingError(503, "relay_unavailable", "the relay closed; try again")
            try:
                # The owner's refusals arrived with its feed.
                self._refusals.check(claims)
            except SignalingError:
                if not room.participants:
                    await room.close()
                raise
        return room

    def refuse_earlier_tokens(self, space_id: str, user_id: str | None = None) -> None:
        """After "end" (or "remove"), tokens minted before it no longer admit anyone
        (refusals.py)."""
        self._refusals.refuse_earlier_tokens(space_id, user_id)

    def refusals(self, space_id: str) -> dict[str, Any]:
        """What a relay of the Space must refuse too (sent with the feed)."""
        return self._refusals.of_space(space_id)

    def adopt_refusals(self, space_id: str, refusals: dict[str, Any]) -> None:
        self._refusals.adopt(space_id, refusals)

    def _room_closed(self, room: Room) -> None:
        if self.rooms.get(room.space_id) is room:
            del self.rooms[room.space_id]
            log.info("room closed", extra={"space_id": room.space_id})

    def find_session(self, space_id: str, session_id: str) -> Participant | None:
        room = self.rooms.get(space_id)
        return room.participants.get(session_id) if room is not None else None

    def start_draining(self) -> None:
        # The front tells the control plane (node_draining): it is the node's news.
        if self.draining:
            return
        self.draining = True
        log.info("draining", extra={"rooms": self.room_count()})

    def status(self) -> dict[str, Any]:
        """What the front places by and aggregates (see front.py and supervisor.py)."""
        rooms = {}
        for space_id, room in self.rooms.items():
            participants = room.participants.values()
            rooms[space_id] = {
                "participants": len(participants),
                "listeners": sum(1 for p in participants if not p.may_publish),
                "relay": isinstance(room, RelayRoom),
                "origin": room.origin if isinstance(room, RelayRoom) else None,
            }
        counters = self.counters
        return {
            "rooms": rooms,
            "counters": {
                "packets_in": counters.packets_in,
                "packets_out": counters.packets_out,
                "late_ticks": counters.late_ticks,
            },
            "cpu_seconds": time.process_time(),
            "draining": self.draining,
        }

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
