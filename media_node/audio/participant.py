"""One peer connection in a room: what it publishes (its jitter buffer, voice activity
and encoder of its own mix) and what it is sent (the fast path's stream), its data
channel and its reactions."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from aiortc import RTCDataChannel, RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtp import RtpPacket

from ..tokens import PUBLISHING_ROLES, JoinClaims
from ..transport.fanout import RtpStream, StreamGone, take_over
from ..transport.receive import take_over_receiving
from .jitter import JitterBuffer
from .mixer import OpusEncoder, VoiceActivity
from .tracks import MixTrack

if TYPE_CHECKING:
    from .room import Room

log = logging.getLogger("media_node.room")

REACTIONS_PER_WINDOW = 5
REACTION_WINDOW_SECONDS = 10.0
MAX_EMOJI_LENGTH = 16
MAX_CHANNEL_MESSAGE = 1024


class Participant:
    """One peer connection in a room: what it publishes and what it is sent."""

    def __init__(
        self, room: Room, session_id: str, claims: JoinClaims, pc: RTCPeerConnection
    ) -> None:
        self.room = room
        self.session_id = session_id
        self.user_id = claims.user_id
        self.role = claims.role
        self.muted = claims.muted
        self.pc = pc
        self.stream: RtpStream | None = None
        self.track = MixTrack()
        self.jitter = JitterBuffer()
        self.vad = VoiceActivity()
        self.encoder: OpusEncoder | None = OpusEncoder() if self.may_publish else None
        self.channel: RTCDataChannel | None = None
        self.connected = False
        self.closed = False
        # Where the front's order of joins put this one (internal.ADMISSION_HEADER).
        self.admission = 0
        self.admitted_at = time.monotonic()
        self._reactions: deque[float] = deque()

    @property
    def may_publish(self) -> bool:
        return self.role in PUBLISHING_ROLES

    @property
    def audible(self) -> bool:
        return self.may_publish and not self.muted

    def describe(self) -> dict[str, str]:
        return {
            "space_id": self.room.space_id,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "role": self.role,
        }

    def receive(self, track: MediaStreamTrack) -> None:
        """Take the peer's audio off aiortc's receive path, into this jitter buffer.

        aiortc emits the track before it starts the receiver, which is the moment the
        receiver can be taken over (transport/receive.py).
        """
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.track is track:
                take_over_receiving(transceiver.receiver, self._packet)

    def _packet(self, packet: RtpPacket, arrival: float) -> None:
        self.room.counters.packets_in += 1
        # Decided per packet, so a promotion takes effect with the next one; a
        # listener's audio is never even decoded.
        if self.audible:
            self.jitter.push(
                packet.ssrc, packet.sequence_number, packet.timestamp, packet.payload, arrival
            )

    def attach_channel(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        channel.on("message", self._on_message)
        self.send(
            {
                "type": "welcome",
                "session_id": self.session_id,
                "user_id": self.user_id,
                "role": self.role,
                "muted": self.muted,
                "speaking": self.room.speaking_users(),
                "recording": self.room.recording,
            }
        )

    def send(self, message: dict[str, Any]) -> None:
        self.send_text(json.dumps(message))

    def send_text(self, text: str) -> None:
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            channel.send(text)

    def _on_message(self, message: str | bytes) -> None:
        if len(message) > MAX_CHANNEL_MESSAGE:
            return
        try:
            data = json.loads(message)
        except ValueError:
            return
        if not isinstance(data, dict) or data.get("type") != "reaction":
            return
        emoji = data.get("emoji")
        if not isinstance(emoji, str) or not 0 < len(emoji) <= MAX_EMOJI_LENGTH:
            return
        if not self._take_reaction_allowance():
            return
        self.room.react(self.user_id, emoji)

    def _take_reaction_allowance(self) -> bool:
        now = time.monotonic()
        while self._reactions and now - self._reactions[0] >= REACTION_WINDOW_SECONDS:
            self._reactions.popleft()
        if len(self._reactions) >= REACTIONS_PER_WINDOW:
            return False
        self._reactions.append(now)
        return True

    def take_over_sending(self, sender: RTCRtpSender) -> None:
        """Send this peer's audio with the room's fast path, not aiortc's sender."""
        take_over(sender, lambda parameters: self._sending_started(sender, parameters))

    def _sending_started(self, sender: RTCRtpSender, parameters: RTCRtpSendParameters) -> None:
        if self.closed:
            return
        try:
            if self.stream is None:
                self.stream = RtpStream(sender, parameters)
            else:
                # A renegotiation may move the payload type or the mid's extension id;
                # the sequence numbers and timestamps go on as before.
                self.stream.configure(parameters)
        except StreamGone as exc:
            # aiortc only starts senders on a connected transport, so this is a peer
            # leaving at that very moment: its state change removes it.
            log.warning("no outbound stream: %s", exc, extra=self.describe())
        self.room.place(self)

    def close_stream(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
            self.room.place(self)

    async def close(self) -> None:
        if self.jitter.stats.starts:
            log.info(
                "inbound audio", extra={**self.describe(), **dataclasses.asdict(self.jitter.stats)}
            )
        if self.stream is not None:
            native = self.stream.native
            log.info(
                "outbound stream",
                extra={
                    **self.describe(),
                    "sent": native.sent,
                    "dropped": native.dropped,
                    "receiver_reports": native.receiver_reports,
                    # ICE consent (RFC 7675), handled in C: our checks, the peer's valid
                    # answers to them, and the peer's checks we answered.
                    "consent_checks": native.consent_checks,
                    "consent_responses": native.consent_responses,
                    "consent_answers": native.consent_answers,
                    "consent_expired": native.consent_expired,
                },
            )
        self.close_stream()
        await self.pc.close()
        self.track.stop()
