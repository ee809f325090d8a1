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
aiortc's private fields used here are pinned by `aiortc==1.16.0`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiortc import RTCRtpReceiver
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RtpPacket

from .mixer import SAMPLE_RATE

OPUS = "audio/opus"
# RTCRtpReceiver's name-mangled state.
STARTED = "_RTCRtpReceiver__started"
RTCP_TASK = "_RTCRtpReceiver__rtcp_task"
REMOTE_STREAMS = "_RTCRtpReceiver__remote_streams"

Deliver = Callable[[RtpPacket, float], None]


def take_over_receiving(receiver: RTCRtpReceiver, deliver: Deliver) -> None:
    """Give each Opus packet `receiver` gets to `deliver(packet, arrival)`, at once.

    `arrival` is `time.monotonic()` when the packet reached the receiver. Must be called
    before aiortc calls `receiver.receive()`, i.e. from the peer connection's "track"
    event, which aiortc emits before it connects.
    """
    state = vars(receiver)
    streams: dict[int, StreamStatistics] = state[REMOTE_STREAMS]
    opus_types: set[int] = set()

    async def receive(parameters: RTCRtpReceiveParameters) -> None:
        # Again after each renegotiation: the payload type may have moved.
        opus_types.clear()
        opus_types.update(
            codec.payloadType
            for codec in parameters.codecs
            if codec.mimeType.lower() == OPUS and codec.payloadType is not None
        )
        receiver.transport._register_rtp_receiver(receiver, parameters)
        if not state[STARTED]:
            # Marked started, so that aiortc's stop() unregisters it and ends this task.
            state[RTCP_TASK] = asyncio.ensure_future(receiver._run_rtcp())
            state[STARTED] = True

    async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
        # aiortc's arrival_time_ms is wall-clock milliseconds; the jitter buffer wants
        # the monotonic clock the mixer ticks on, at full resolution.
        arrival = time.monotonic()
        if not receiver._enabled or packet.payload_type not in opus_types:
            return
        stream = streams.get(packet.ssrc)
        if stream is None:
            stream = streams[packet.ssrc] = StreamStatistics(SAMPLE_RATE)
        stream.add(packet)
        deliver(packet, arrival)

    receiver.receive = receive  # type: ignore[method-assign]
    receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]
