"""A worker's rooms, its admission rules and its draining state.

Each worker process of a node (the supervisor starts them) has one `Rooms`: the rooms
it owns (it mixes them) and the rooms it relays (audio/relay.py), what it was told of
its participants' authority, and what the commands and reconciliation say of them.
What is per node, not per worker (capacity, one use of a join token, placement), is the
front's (supervisor/front.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from ..audio import senders
from ..audio.participant import Participant
from ..audio.relay import FeedUnavailable, RelayRoom
from ..audio.room import Room
from ..authority import LISTENER, Authority, AuthorityBook
from ..commands import authority_of
from ..config import Config
from ..errors import NodeError
from ..events import MediaEvents
from ..hls.service import Packaging
from ..internal import FeedSource
from ..sessions import new_session_id
from ..tokens import JoinClaims, TokenVerifier
from ..transport.udp_mux import UdpMux
from .reconcile import Reconciler, Truth

log = logging.getLogger("media_node.rooms")

class Rooms:
    def __init__(self, config: Config, events: MediaEvents, worker: int = 0) -> None:
        self.config = config
        self.node_id = config.node_id
        self.worker = worker
        self.verifier = TokenVerifier.from_config(config)
        self.events = events
        # One set of totals for the worker, its events' included.
        self.counters = events.counters
        # The worker's ICE sockets, once it has bound them; None gives each peer
        # aioice's own.
        self.udp_mux: UdpMux | None = None
        self.rooms: dict[str, Room] = {}
        # How the rooms send (the fast path; a baseline of the benchmark's).
        self.sender = senders.load(config.room_sender)
        self.draining = False
        # What this worker has been told of its participants' authority (authority.py).
        self.book = AuthorityBook()
        # The control plane's view, when the node may read its tables (reconcile.py).
        self.reconciler: Reconciler | None = None
        # HLS of the rooms this worker mixes, when the node has a bucket (hls/).
        self.hls: Packaging | None = None

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

    async def admit(self, claims: JoinClaims) -> JoinClaims:
        """The claims to admit a join with, by the latest authority the worker knows.
        Before a join that may publish (a voice in the mix) or opens a room, the worker
        reads the control plane's view of that member and Space (so a restarted worker,
        which was told nothing, starts from the truth); without it, it goes by what it
        has been told."""
        if self.reconciler is not None and (
            claims.may_publish or claims.space_id not in self.rooms
        ):
            truth = await self.reconciler.read({claims.space_id: {claims.user_id}})
            if truth is not None:
                await self.converge(truth)
                state = truth.spaces.get(claims.space_id)
                owner = claims.origin or self.node_id
                if state is not None and state.node_id and state.node_id != owner:
                    raise NodeError(409, "space_moved", "this Space is on another node "
                                         "now: join it again through the API")
        return self.book.effective(claims)

    async def open_room(
        self, claims: JoinClaims, feed: FeedSource | None = None
    ) -> tuple[Room, JoinClaims]:
        """The Space's room in this worker, opened if need be and if the worker may:
        a room it mixes, or with `feed` (the front says where from) a room it relays;
        and the claims to admit the join with (a relay learns its owner's book)."""
        space_id = claims.space_id
        claims = self.book.effective(claims)
        room = self.rooms.get(space_id)
        if room is None and self.draining:
            raise NodeError(503, "draining", "this node is draining and opens no new rooms")
        if claims.may_publish and (isinstance(room, RelayRoom) or (room is None and feed)):
            # Speakers publish into the mix, which is made where the Space is owned.
            raise NodeError(403, "wrong_node", "speakers join the Space where it is mixed")
        if room is None:
            config = self.config
            if feed is None:
                room = Room(space_id, self.events, self.counters, self._room_closed, self.sender)
            else:
                room = RelayRoom(space_id, self.events, self.counters, self._room_closed,
                                 self.sender, feed, self, config.host)
            self.rooms[space_id] = room
            room.recording = claims.recording
            if feed is None and self.hls is not None:
                room.output = self.hls.open(room, claims.recording)
            log.info("room opened", extra={"space_id": space_id, "relay": feed is not None})
        if isinstance(room, RelayRoom):
            try:
                await room.ready()
            except FeedUnavailable as exc:
                log.warning("no feed to relay", extra={"space_id": space_id, "why": str(exc)})
                raise NodeError(
                    503, "relay_unavailable", "the Space's audio cannot be relayed; try again"
                ) from None
            if room.closed:
                # Another join, refused, closed the room while this one waited for it.
                raise NodeError(503, "relay_unavailable", "the relay closed; try again")
            try:
                # The owner's book arrived with its feed.
                claims = self.book.effective(claims)
                if claims.may_publish:
                    raise NodeError(
                        403, "wrong_node", "speakers join the Space where it is mixed")
            except NodeError:
                if not room.participants:
                    await room.close()
                raise
        return room, claims

    def admitted(self, claims: JoinClaims) -> None:
        """The session was admitted with `claims`: the book holds at least that."""
        self.book.learn(claims.space_id, claims.user_id,
                        Authority(claims.version, claims.role, claims.muted))

    # -- what the control plane says -----------------------------------------------

    async def end_space(self, space_id: str) -> None:
        self.book.end(space_id)
        room = self.rooms.get(space_id)
        if room is not None and not isinstance(room, RelayRoom):
            # A relay hears of the end from its owner's feed, in the owner's order.
            await room.end({"type": "space_ended"}, reason="ended")

    async def close_moved(self, space_id: str) -> None:
        """The Space now lives on another node: its clients join it there."""
        room = self.rooms.get(space_id)
        if room is not None and not isinstance(room, RelayRoom):
            log.info("the Space moved to another node: closing it here",
                     extra={"space_id": space_id})
            await room.end({"type": "rejoin", "reason": "moved"}, reason="moved")

    async def learn(self, space_id: str, user_id: str, authority: Authority) -> bool:
        """Act on a member's authority if it is newer than what the worker knows."""
        if not self.book.learn(space_id, user_id, authority):
            return False
        room = self.rooms.get(space_id)
        if room is not None:
            await room.apply_authority(user_id, authority)
        return True

    async def apply_command(self, command: dict[str, Any]) -> None:
        """A command from the control plane (commands.py): a duplicate, or one older
        than what the worker knows, changes nothing."""
        kind, space_id = command["type"], command["space_id"]
        fields = {"command": command}
        if kind == "end":
            await self.end_space(space_id)
            log.info("space ended", extra=fields)
        elif kind == "close":
            await self.close_moved(space_id)
        else:
            authority = authority_of(command)
            assert authority is not None
            applied = await self.learn(space_id, command["user_id"], authority)
            log.info("command applied" if applied else "command older than what is known",
                     extra=fields)

    def held(self) -> dict[str, set[str]]:
        """The Spaces open here and the users connected in each."""
        return {space_id: {p.user_id for p in room.participants.values()}
                for space_id, room in self.rooms.items()}

    async def converge(self, truth: Truth) -> None:
        """Repair whatever differs from the control plane's view (reconcile.py)."""
        for space_id, state in truth.spaces.items():
            room = self.rooms.get(space_id)
            if state.state != "live":
                self.book.end(space_id)
                if room is not None:
                    notice = {"type": "space_ended"}
                    await room.end(notice, reason="ended")
                continue
            if room is None or state.node_id is None:
                continue
            if isinstance(room, RelayRoom):
                # A room relayed for another worker of this node has no origin of its own.
                if state.node_id != (room.origin or self.node_id):
                    await room.lose_feed()
            elif state.node_id != self.node_id:
                await self.close_moved(space_id)
        for (space_id, user_id), authority in truth.members.items():
            if authority is not None:
                await self.learn(space_id, user_id, authority)
                continue
            room = self.rooms.get(space_id)
            if room is None:
                continue
            # Not a member (any more): they left through the API after joining here,
            # which takes them off the stage.
            for participant in room.of_user(user_id):
                if participant.may_publish and participant.admitted_at < truth.read_at:
                    room.set_role(user_id, LISTENER)
                    break

    def adopt_book(self, space_id: str, book: dict[str, Any]) -> None:
        """A relay learns what its owner knows of the Space (with the feed)."""
        self.book.adopt(space_id, book)

    def _room_closed(self, room: Room) -> None:
        if self.rooms.get(room.space_id) is room:
            del self.rooms[room.space_id]
            log.info("room closed", extra={"space_id": room.space_id})

    def find_session(self, space_id: str, session_id: str) -> Participant | None:
        room = self.rooms.get(space_id)
        return room.participants.get(session_id) if room is not None else None

    def start_draining(self) -> None:
        """Open no new room, and tell every participant to join again through the API,
        which now places their Space on another node (the registry says this one is
        draining): a deploy moves the Spaces before the task stops, at the cost of a
        reconnect. With no other node the API sends them back here, where their room
        is still open, until the drain times out."""
        # The front tells the control plane (node_draining): it is the node's news.
        if self.draining:
            return
        self.draining = True
        log.info("draining", extra={"rooms": self.room_count()})
        for room in self.rooms.values():
            room.broadcast({"type": "rejoin", "reason": "draining"})

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
                # Those the control plane was told connected: if this worker dies, the
                # supervisor tells it they left (reason worker_lost).
                "connected": [[p.session_id, p.user_id, p.role]
                              for p in participants if p.connected],
                # The supervisor's number for each join this room holds: a join it
                # still counts as in flight is already here if its number is.
                "admissions": [p.admission for p in participants],
            }
        return {
            "rooms": rooms,
            "counters": dataclasses.asdict(self.counters),
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
