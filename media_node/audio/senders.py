"""How a room's encoded audio reaches its peers: the room's sender strategy.

The node sends with the fast path (`FastSender`): one C pass per packet over the room's
listeners, header and SRTP per listener (transport/fanout.py), aiortc's RTCRtpSender
never started. A worker takes its rooms' strategy from `ROOM_SENDER` (config.py): the
benchmark runs the same node with the baselines it compares the fast path against
(aiortc's stock sender per peer, and an encoder per peer as aiortc's examples do), which
live in bench/media/senders.py, not here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol

from aiortc import RTCRtpSender
from av import Packet

from ..transport.fanout import send_to_all
from .mixer import Mix

if TYPE_CHECKING:
    from .participant import Participant
    from .room import Room

FAST = "fast"


class Sender(Protocol):
    def attach(self, participant: Participant, sender: RTCRtpSender) -> None:
        """A new peer's aiortc sender, before the offer is answered."""

    def to_listeners(self, room: Room, payloads: list[bytes], packets: list[Packet],
                     mix: Mix, pts: int) -> int:
        """One tick's listener encoding (`packets`, and as bytes), to every listener of
        the room; `mix` is what was encoded. Returns the packets sent."""

    def to_publisher(self, participant: Participant, packets: list[Packet], pts: int) -> int:
        """A connected publisher's own mix (the room without their voice)."""

    def relayed(self, room: Room, payload: bytes, pts: int) -> int:
        """A packet of the owner's listener mix, to a relay room's listeners."""


class FastSender:
    def attach(self, participant: Participant, sender: RTCRtpSender) -> None:
        participant.take_over_sending(sender)

    def to_listeners(self, room: Room, payloads: list[bytes], packets: list[Packet],
                     mix: Mix, pts: int) -> int:
        streams = room.listening_streams()
        return sum(send_to_all(streams, payload, pts) for payload in payloads)

    def to_publisher(self, participant: Participant, packets: list[Packet], pts: int) -> int:
        # Until ICE and DTLS are up there is no stream to take them.
        stream = participant.stream
        if stream is None:
            return 0
        return sum(send_to_all((stream.native,), bytes(packet), pts) for packet in packets)

    def relayed(self, room: Room, payload: bytes, pts: int) -> int:
        return send_to_all(room.listening_streams(), payload, pts)


class SenderError(ValueError):
    """ROOM_SENDER names no sender this node can load."""


def load(spec: str) -> Sender:
    """`fast`, or `module:Class` for a sender of the benchmark's."""
    if spec == FAST:
        return FastSender()
    module, _, name = spec.partition(":")
    try:
        sender: Sender = getattr(importlib.import_module(module), name)()
    except (ImportError, AttributeError, ValueError) as exc:
        raise SenderError(f"ROOM_SENDER {spec!r} is not 'fast' or module:Class: {exc}") \
            from exc
    return sender
