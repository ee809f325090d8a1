"""The fast inbound path: a peer's RTP packets straight to the room, past aiortc's receiver.

aiortc's RTCRtpReceiver puts every audio packet through a fixed jitter buffer (16 slots,
4 frames prefetched: a packet waits about 80 ms before it is even decoded), decodes it in
a thread of its own and queues the frame on a track that a task must read; the room then
buffered again before mixing. `take_over_receiving` keeps the parts of the receiver that
the peer still relies on and hands every packet, as soon as aiortc's DTLS transport has
unprotected and parsed it, to a callback (the room's jitter buffer, see jitter.py):

- `receive(parameters)`, which aiortc calls once DTLS is up (and after each
  renegotiation), registers the receiver with the DTLS transport as aiortc does, so the
  transport keeps routing this peer's RTP to it, and starts aiortc's own RTCP loop, which
  sends the peer receiver reports. No decoder thread is started.
- The per-packet handler keeps the per-SSRC statistics those reports are built from
  (highest sequence number, loss, interarrival jitter) with aiortc's own class, in
  aiortc's own table, so the reports and `getStats()` read exactly as before. The peer's
  sender reports still reach aiortc's handler, which notes what the reports' LSR and
  DLSR fields need.

What is dropped with the rest: the track never yields a frame, and
`getSynchronizationSources()` stays empty; nothing in the node reads either.
The receiver's private parts are reached through aiortc_seams.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiortc import RTCRtpReceiver
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RtpPacket

from . import aiortc_seams

OPUS = "audio/opus"
# Opus's RTP clock (RFC 7587), whatever the sample rate inside.
OPUS_CLOCK_RATE = 48000

Deliver = Callable[[RtpPacket, float], None]


def take_over_receiving(receiver: RTCRtpReceiver, deliver: Deliver) -> None:
    """Give each Opus packet `receiver` gets to `deliver(packet, arrival)`, at once.

    `arrival` is `time.monotonic()` when the packet reached the receiver. Must be called
    before aiortc calls `receiver.receive()`, i.e. from the peer connection's "track"
    event, which aiortc emits before it connects.
    """
    opus_types: set[int] = set()

    def negotiated(parameters: RTCRtpReceiveParameters) -> None:
        # Again after each renegotiation: the payload type may have moved.
        opus_types.clear()
        opus_types.update(
            codec.payloadType
            for codec in parameters.codecs
            if codec.mimeType.lower() == OPUS and codec.payloadType is not None
        )

    def handle(packet: RtpPacket, stream: StreamStatistics | None) -> None:
        # aiortc's own arrival time is wall-clock milliseconds; the jitter buffer wants
        # the monotonic clock the mixer ticks on, at full resolution.
        arrival = time.monotonic()
        if stream is None or packet.payload_type not in opus_types:
            return
        stream.add(packet)
        deliver(packet, arrival)

    aiortc_seams.take_over_receiving(receiver, negotiated, handle, OPUS_CLOCK_RATE)
