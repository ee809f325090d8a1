"""The baselines the benchmark runs the real node with, instead of its fast path
(media_node/audio/senders.py): `ROOM_SENDER=bench.media.senders:StockSender` (or
`:EncodingSender`) in the node's environment.

- `StockSender`: each peer's own aiortc RTCRtpSender, handed the room's shared encoded
  packets through its track, so it only packetizes (aiortc skips its encoder for an
  `av.Packet`): stock aiortc with the mix encoded once.
- `EncodingSender`: the pattern of aiortc's examples: each peer's sender gets the
  decoded mix and encodes it itself.
"""

from __future__ import annotations

import av
from aiortc import RTCRtpSender
from av import AudioFrame, Packet

from media_node.audio.mixer import TIME_BASE, Mix, mix_frame
from media_node.audio.participant import Participant
from media_node.audio.room import Room


def _listeners(room: Room) -> list[Participant]:
    return [p for p in room.participants.values() if p.encoder is None and p.connected]


class StockSender:
    def attach(self, participant: Participant, sender: RTCRtpSender) -> None:
        """aiortc starts the sender, which reads the participant's track."""

    def _push(self, room: Room, frames: list[Packet] | list[AudioFrame]) -> int:
        sent = 0
        for participant in _listeners(room):
            for frame in frames:
                participant.track.push(frame)
            sent += len(frames)
        return sent

    def to_listeners(self, room: Room, payloads: list[bytes], packets: list[Packet],
                     mix: Mix, pts: int) -> int:
        return self._push(room, packets)

    def to_publisher(self, participant: Participant, packets: list[Packet], pts: int) -> int:
        for packet in packets:
            participant.track.push(packet)
        return len(packets)

    def relayed(self, room: Room, payload: bytes, pts: int) -> int:
        packet = av.Packet(payload)
        packet.pts = pts
        packet.time_base = TIME_BASE
        return self._push(room, [packet])


class EncodingSender(StockSender):
    def to_listeners(self, room: Room, payloads: list[bytes], packets: list[Packet],
                     mix: Mix, pts: int) -> int:
        return self._push(room, [mix_frame(mix, pts)])
