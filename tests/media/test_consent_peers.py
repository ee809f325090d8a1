"""ICE consent freshness of fast-path streams with real WebRTC peers over loopback.

The node's side is the node's own code (a Room, its participant made and wired as
signaling makes them) in this process, so that the consent timers can be shortened
through the modules, on both sides: the C stream's (`_fanout.consent_timing`) and the
peer's aioice's (a check every 0.4-0.6 s, the connection closed after six unanswered).
The production values stay RFC 7675's; test_browser_listener.py runs Chromium against
a real node with them, well past 30 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtp import RtpPacket

from media_node.audio.participant import Participant
from media_node.audio.room import Room
from media_node.audio.senders import FastSender
from media_node.metrics import Counters
from media_node.tokens import JoinClaims
from media_node.transport import _fanout
from media_node.transport import aiortc_seams as seams
from media_node.worker.signaling import new_participant

pytestmark = pytest.mark.slow

# The node's timers, shortened: a check every 0.4-0.6 s, consent lost after 3 s.
NODE_INTERVAL = 0.5
NODE_TIMEOUT = 3.0
# The peer's aioice: a check every 0.4-0.6 s, closed after 6 unanswered (about 3 s).
PEER_INTERVAL = 0.5


class Events:
    """The room's media events, kept in memory."""

    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    def publish(self, event_type: str, **fields: Any) -> None:
        self.published.append({"type": event_type, **fields})


@pytest.fixture
def short_timers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", PEER_INTERVAL)
    previous = _fanout.consent_timing(interval=NODE_INTERVAL, timeout=NODE_TIMEOUT)
    yield
    _fanout.consent_timing(*previous)


class Setup:
    """A room on this process with one listener, a real aiortc peer, connected to it."""

    def __init__(self) -> None:
        self.events = Events()
        self.closed: list[Room] = []
        self.room = Room("sp_consent", self.events, Counters(), self.closed.append,  # type: ignore[arg-type]
                         FastSender())
        claims = JoinClaims(
            user_id="u_listener",
            space_id="sp_consent",
            role="listener",
            node_id="node",
            muted=False,
            jti="jti",
            issued_at=0,
            expires_at=0,
        )
        self.participant: Participant = new_participant(self.room, "session", claims)
        self.peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.received: list[float] = []
        # Checks that reach each side's aioice.
        self.node_aioice_checks = 0
        self.peer_aioice_checks = 0

    async def connect(self) -> None:
        self.room.add(self.participant)
        self.peer.addTransceiver("audio", direction="recvonly")
        await self.peer.setLocalDescription(await self.peer.createOffer())
        node = self.participant.pc
        await node.setRemoteDescription(self.peer.localDescription)
        await node.setLocalDescription(await node.createAnswer())
        await self.peer.setRemoteDescription(node.localDescription)
        receiver: Any = self.peer.getTransceivers()[0].receiver
        original = seams.packet_handler(receiver)

        async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
            self.received.append(time.monotonic())
            await original(packet, arrival_time_ms)

        seams.replace_packet_handler(receiver, handle)
        deadline = time.monotonic() + 10
        while not (self.participant.connected and self.participant.stream and self.received):
            assert time.monotonic() < deadline, "not connected"
            await asyncio.sleep(0.05)
        self._count_checks(self.node_connection, "node_aioice_checks")
        self._count_checks(self.peer_connection, "peer_aioice_checks")

    def _count_checks(self, connection: Any, counter: str) -> None:
        original = connection.request_received

        def counted(*args: Any) -> None:
            setattr(self, counter, getattr(self, counter) + 1)
            original(*args)

        connection.request_received = counted

    @property
    def node_connection(self) -> Any:
        return seams.ice_connection(self.participant.pc.getTransceivers()[0].sender.transport)

    @property
    def peer_connection(self) -> Any:
        return seams.ice_connection(self.peer.getTransceivers()[0].receiver.transport)

    async def close(self) -> None:
        await self.peer.close()
        for participant in list(self.room.participants.values()):
            await self.room.remove(participant, reason="left")
        await self.room.close()


def test_a_listener_stays_connected_on_consent_answered_in_c_both_ways(
    short_timers: None,
) -> None:
    async def scenario() -> None:
        setup = Setup()
        try:
            await setup.connect()
            stream = setup.participant.stream
            assert stream is not None
            native = stream.native
            # aioice no longer checks consent on the node's side.
            assert seams.consent_task(setup.node_connection) is None
            answers, checks = native.consent_answers, native.consent_checks
            start, heard = time.monotonic(), len(setup.received)
            # Over three times each side's (shortened) consent expiry.
            await asyncio.sleep(10)
            seconds = time.monotonic() - start

            assert setup.peer.connectionState == "connected"
            assert setup.participant.pc.connectionState == "connected"
            assert setup.room.participants == {"session": setup.participant}
            # The peer's checks, every 0.4-0.6 s, were answered in C: aioice saw none.
            assert native.consent_answers - answers >= 12
            assert setup.node_aioice_checks == 0
            # The node's own checks reached the peer's aioice and came back answered.
            assert native.consent_checks - checks >= 12
            # The last check sent may still be in the peer's socket buffer.
            assert setup.peer_aioice_checks >= native.consent_checks - checks - 1
            assert native.consent_responses >= native.consent_checks - 2
            assert native.consent_age is not None
            assert native.consent_age < 1.0
            # And the audio never stopped.
            assert len(setup.received) - heard >= 0.9 * 50 * seconds
            assert not native.consent_expired
        finally:
            await setup.close()

    asyncio.run(scenario())


def test_a_peer_that_stops_answering_is_removed_after_the_consent_timeout(
    short_timers: None,
) -> None:
    async def scenario() -> None:
        setup = Setup()
        try:
            await setup.connect()
            stream = setup.participant.stream
            assert stream is not None
            native = stream.native
            await asyncio.sleep(1.5)
            assert native.consent_responses >= 1
            # The peer goes on checking (and hearing the node's answers), but never
            # answers the node's checks again, as a peer that is gone or turned hostile.
            setup.peer_connection.request_received = lambda *args: None
            stopped = time.monotonic()
            deadline = stopped + 3 * NODE_TIMEOUT
            while setup.room.participants:
                assert time.monotonic() < deadline, "never removed"
                await asyncio.sleep(0.05)
            removed = time.monotonic() - stopped

            # Consent ran out 3 s after the last answer, which came at most one check
            # (0.6 s) before the peer stopped; then the usual path of a failed peer.
            assert NODE_TIMEOUT - 0.7 < removed < NODE_TIMEOUT + 1.5
            assert native.consent_expired
            assert not native.routed
            left = [e for e in setup.events.published if e["type"] == "participant_left"]
            assert len(left) == 1
            assert left[0]["user_id"] == "u_listener"
            # What aioice's own consent expiry led to, too: the ICE connection closes,
            # and the peer connection goes failed or closed first, as the tasks run.
            assert left[0]["reason"] in ("connection_failed", "connection_closed")
            assert setup.closed == [setup.room]
            # Not one packet after consent was lost.
            assert setup.received
            assert setup.received[-1] < stopped + NODE_TIMEOUT + 0.1
        finally:
            await setup.close()

    asyncio.run(scenario())
