"""A Space on this node: its participants (participant.py), its clock-driven mixer and
its data channels."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from av import Packet

from ..authority import Authority
from ..events import MediaEvents
from ..metrics import Counters
from ..transport.fanout import (
    Stream,
    StreamGone,
    StreamSet,
    upkeep,
)
from .mixer import (
    FRAME_SAMPLES,
    FRAME_SECONDS,
    Mix,
    OpusEncoder,
    Speech,
    level_dbfs,
)
from .participant import Participant
from .senders import Sender

log = logging.getLogger("media_node.room")

# A room passes on at most this many reactions a second, whatever its number of
# participants: each is a message to every one of them (and to every relay).
ROOM_REACTIONS_PER_SECOND = 20
# Time for a last data-channel notice ("removed", "space_ended") to leave before the
# transport under it closes.
FAREWELL_SECONDS = 0.3
# A mixer more than this far behind its clock skips ahead instead of bursting.
MAX_LAG_SECONDS = 0.2
# Every this many ticks (half a second) each fast stream refreshes its route, a
# 1/STREAM_UPKEEP_TICKS share of them per tick so that a large room never spends one
# long tick on it. Consent checks and sender reports are C's (`upkeep`, every tick:
# each stream keeps its own schedule). Cheap, and off the per-packet path.
STREAM_UPKEEP_TICKS = 25


class RelayOutlet(Protocol):
    """A worker relaying this room (relay.py): it gets every encoded listener packet and
    every room event, and fans them out to listeners of its own."""

    def send_packet(self, payload: bytes, pts: int) -> None: ...

    def send_text(self, text: str) -> None: ...

    def close(self) -> None: ...


class MixOutput(Protocol):
    """The room's mix in another form (HLS, media_node/hls): fed each tick after the
    sends, told when the Space itself ends, closed with the room."""

    def push(self, mix: Mix) -> None: ...

    def space_ended(self) -> None: ...

    def close(self) -> None: ...


class Room:
    """A Space: every 20 ms, mix the audible speakers and send each participant its mix.

    Listeners all receive one encoding of the full mix; each publisher receives an
    encoding of the mix without their own voice. The clock never waits for a speaker:
    a speaker with nothing buffered simply adds nothing to this tick.
    """

    def __init__(
        self,
        space_id: str,
        events: MediaEvents,
        counters: Counters,
        on_closed: Callable[[Room], None],
        sender: Sender,
    ) -> None:
        self.space_id = space_id
        self.sender = sender
        self.events = events
        self.counters = counters
        self.participants: dict[str, Participant] = {}
        # Workers (here or on other nodes) that send this room to listeners of their own.
        self.relays: list[RelayOutlet] = []
        self.closed = False
        # (kind, user id) -> issued_at of the latest command applied, see commands.py.
        self.command_times: dict[tuple[str, str], float] = {}
        self._on_closed = on_closed
        self._listener_encoder = OpusEncoder()
        self._pts = 0
        self._ticks = 0
        self._clock: asyncio.Task[None] | None = None
        # The fast path's listeners (session id -> C stream): every connected peer with
        # a stream and no mix of its own. Kept up to date by `place` at each change, so
        # a tick hands it to C as it is instead of gathering it per packet.
        self._listening = StreamSet()
        # Every fast stream of the room, listeners' and publishers' alike, for `upkeep`.
        self._streams = StreamSet()
        # The participants with a mix of their own (speakers and hosts): the only ones a
        # tick visits in Python, so a room's listeners cost it nothing per packet beyond
        # the C pass over `_listening`.
        self._publishers: dict[str, Participant] = {}
        self._upkeep_due: list[Participant] = []
        # When the room's latest reactions were passed on (for its cap, a sliding second).
        self._passed_reactions: deque[float] = deque()
        # HLS (set by the node when it opens the room): whether the Space is recorded,
        # and the mix's packager, on the room that mixes it only.
        self.recording = False
        self.output: MixOutput | None = None

    def add(self, participant: Participant) -> None:
        self.participants[participant.session_id] = participant
        self.place(participant)
        if self._clock is None:
            self._clock = asyncio.create_task(self._run(), name=f"mix-{self.space_id}")

    def of_user(self, user_id: str) -> list[Participant]:
        return [p for p in self.participants.values() if p.user_id == user_id]

    async def replace(self, user_id: str, admission: int) -> None:
        """The user joined again (a reload, another device): close their sessions that
        the node's front admitted before that join (`admission`), here, reason
        `replaced`. Of two joins at once, the later stays, whichever was answered first."""
        for participant in self.of_user(user_id):
            if participant.admission < admission:
                await self.remove(participant, reason="replaced")

    def speaking_users(self) -> list[str]:
        return [p.user_id for p in self.participants.values() if p.vad.speaking]

    def broadcast(self, message: dict[str, Any]) -> None:
        text = json.dumps(message)
        for participant in self.participants.values():
            participant.send_text(text)
        for relay in self.relays:
            relay.send_text(text)

    def react(self, user_id: str, emoji: str) -> None:
        now = time.monotonic()
        passed = self._passed_reactions
        while passed and now - passed[0] >= 1.0:
            passed.popleft()
        if len(passed) >= ROOM_REACTIONS_PER_SECOND:
            self.counters.reactions_dropped += 1
            return
        passed.append(now)
        self.broadcast({"type": "reaction", "user_id": user_id, "emoji": emoji})

    # -- the mixer -------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            try:
                self.tick()
            except Exception:
                log.exception("mix tick failed", extra={"space_id": self.space_id})
            deadline += FRAME_SECONDS
            lag = loop.time() - deadline
            if lag > 0:
                self.counters.late_ticks += 1
                if lag > MAX_LAG_SECONDS:
                    deadline = loop.time()
            await asyncio.sleep(max(0.0, deadline - loop.time()))

    def tick(self) -> None:
        pts = self._pts
        self._pts += FRAME_SAMPLES
        total: Mix = np.zeros(FRAME_SAMPLES, dtype=np.int32)
        own: dict[str, Mix] = {}
        now = time.monotonic()
        for participant in list(self._publishers.values()):
            samples = participant.jitter.pop_frame(now) if participant.audible else None
            if samples is not None:
                voice = samples.astype(np.int32)
                total += voice
                own[participant.session_id] = voice
            change = participant.vad.update(
                level_dbfs(samples) if samples is not None else float("-inf")
            )
            if change is not None:
                self._speech_changed(participant, change)

        listener_packets = self._listener_encoder.encode(total, pts)
        sent = 0
        for participant in self._publishers.values():
            encoder = participant.encoder
            if encoder is None:  # not after `place`, which keeps only those with one
                continue
            # Each publisher hears the room without their own voice.
            mine = own.get(participant.session_id)
            packets = encoder.encode(total - mine if mine is not None else total, pts)
            sent += self._send_own(participant, packets, pts)
        payloads = [bytes(packet) for packet in listener_packets]
        # Relay workers get each packet once, whatever their number of listeners.
        for relay in self.relays:
            for payload in payloads:
                relay.send_packet(payload, pts)
        sent += self.sender.to_listeners(self, payloads, listener_packets, total, pts)
        self.counters.packets_out += sent
        self._ticks += 1
        self._upkeep_streams(pts)
        if self.output is not None:
            self.output.push(total)

    def _send_own(self, participant: Participant, packets: list[Packet], pts: int) -> int:
        # Until ICE and DTLS are up there is no stream (or started sender) to take them.
        if not participant.connected:
            return 0
        return self.sender.to_publisher(participant, packets, pts)

    def listening_streams(self) -> tuple[Stream, ...]:
        """The fast path's listeners: the C streams of the connected peers with no mix
        of their own (kept by `place`)."""
        return self._listening.all()

    def place(self, participant: Participant) -> None:
        """Keep the tick's sets (publishers, the fast path's streams) in step with
        `participant`'s state."""
        if participant.encoder is not None and not participant.closed:
            self._publishers[participant.session_id] = participant
        else:
            self._publishers.pop(participant.session_id, None)
        stream = participant.stream
        if stream is not None and not participant.closed:
            self._streams.put(participant.session_id, stream.native)
        else:
            self._streams.discard(participant.session_id)
        if (
            stream is not None
            and participant.connected
            and participant.encoder is None
            and not participant.closed
        ):
            self._listening.put(participant.session_id, stream.native)
        else:
            self._listening.discard(participant.session_id)

    def _upkeep_streams(self, pts: int) -> None:
        if self._streams:
            for native in upkeep(self._streams.all(), pts):
                self._consent_lost(native)
        phase = self._ticks % STREAM_UPKEEP_TICKS
        if phase == 0:
            self._upkeep_due = [p for p in self.participants.values() if p.stream is not None]
        for participant in self._upkeep_due[phase::STREAM_UPKEEP_TICKS]:
            stream = participant.stream
            if stream is None or participant.closed:
                continue
            try:
                stream.refresh_route()
            except StreamGone:
                # The transport is closing; aiortc reports the state change, which
                # removes the participant. Until then, nothing more is sent to it.
                participant.close_stream()

    def _consent_lost(self, native: Stream) -> None:
        """A peer stopped answering consent checks (RFC 7675): its stream has stopped
        sending; its ICE connection closes, and the peer connection's failure removes it."""
        for participant in self.participants.values():
            stream = participant.stream
            if stream is not None and stream.native is native:
                log.warning("consent expired", extra=participant.describe())
                stream.consent_lost()
                return

    def _speech_changed(self, participant: Participant, change: Speech) -> None:
        event = "speaking_started" if change is Speech.STARTED else "speaking_stopped"
        self.broadcast({"type": event, "user_id": participant.user_id})
        self.events.publish(
            event,
            space_id=self.space_id,
            user_id=participant.user_id,
            role=participant.role,
            session_id=participant.session_id,
        )

    # -- membership and commands -----------------------------------------------------

    def connected(self, participant: Participant) -> None:
        if participant.connected or participant.closed:
            return
        participant.connected = True
        self.place(participant)
        log.info("participant connected", extra=participant.describe())
        self.events.publish("participant_connected", **participant.describe())

    async def remove(self, participant: Participant, reason: str) -> None:
        """Close a participant's connection; safe to call more than once."""
        if participant.closed:
            return
        participant.closed = True
        self.participants.pop(participant.session_id, None)
        self.place(participant)
        stopped = participant.vad.reset()
        if stopped is not None:
            self._speech_changed(participant, stopped)
        if participant.connected:
            log.info("participant left", extra={**participant.describe(), "reason": reason})
            self.events.publish("participant_left", **participant.describe(), reason=reason)
        await participant.close()
        if not self.participants and not self.relays:
            await self.close()

    def set_role(self, user_id: str, role: str) -> bool:
        found = self.of_user(user_id)
        for participant in found:
            if participant.role == role:
                continue
            participant.role = role
            if participant.may_publish:
                if participant.encoder is None:
                    participant.encoder = OpusEncoder()
            else:
                participant.encoder = None
                self._silence(participant)
            # A publisher gets a mix of its own, a listener the room's.
            self.place(participant)
            self.broadcast({"type": "role_changed", "user_id": user_id, "role": role})
        if not found and self.relays:
            # The user may listen through a relay, which acts on the event (relay.py).
            self.broadcast({"type": "role_changed", "user_id": user_id, "role": role})
        return bool(found)

    def set_muted(self, user_id: str, muted: bool) -> bool:
        found = self.of_user(user_id)
        for participant in found:
            if participant.muted == muted:
                continue
            participant.muted = muted
            if muted:
                self._silence(participant)
            self.broadcast({"type": "muted" if muted else "unmuted", "user_id": user_id})
        return bool(found)

    def _silence(self, participant: Participant) -> None:
        # Audio buffered before the mute or demotion must not play after it.
        participant.jitter.clear()
        stopped = participant.vad.reset()
        if stopped is not None:
            self._speech_changed(participant, stopped)

    async def apply_authority(self, user_id: str, authority: Authority) -> None:
        """A newer statement of the user's authority (authority.py): act on all of it."""
        if authority.removed:
            await self.remove_user(user_id, reason="removed")
            return
        self.set_role(user_id, authority.role)
        self.set_muted(user_id, authority.muted)

    async def remove_user(self, user_id: str, reason: str) -> bool:
        found = self.of_user(user_id)
        # Relays close the user's sessions they hold when they see the event.
        if found or self.relays:
            self.broadcast({"type": "removed", "user_id": user_id})
        if found:
            await asyncio.sleep(FAREWELL_SECONDS)
            for participant in found:
                await self.remove(participant, reason)
        return bool(found)

    async def end(self, notice: dict[str, Any], reason: str) -> None:
        """Close every participant, after telling them why."""
        if self.output is not None and reason == "ended":
            self.output.space_ended()
        self.broadcast(notice)
        await asyncio.sleep(FAREWELL_SECONDS)
        for participant in list(self.participants.values()):
            await self.remove(participant, reason)
        await self.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock
        for relay in self.relays:
            relay.close()
        if self.output is not None:
            self.output.close()
        self._on_closed(self)
