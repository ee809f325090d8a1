"""The outbound track of a participant, for aiortc's own RTCRtpSender.

With the fast fan-out (transport/fanout.py) nothing is pushed: the track only keeps the sender's
RTP loop asleep while the room sends for it. With the stock path, a track whose `recv()`
returns `av.Packet` (with pts and a 1/48000 time base) makes aiortc's RTCRtpSender skip
its own encoder and only packetize, so the room encodes a mix once and all listeners'
senders share the very same packet objects. The encode-per-listener baseline pushes the
decoded mix instead, which the sender encodes.
"""

from __future__ import annotations

import asyncio
from collections import deque

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

# 200 ms: a sender that has not started (ICE still connecting) or that stalls gets the
# newest audio when it resumes, not a growing backlog.
QUEUE_FRAMES = 10


class MixTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._packets: deque[av.Packet | av.AudioFrame] = deque(maxlen=QUEUE_FRAMES)
        self._ready = asyncio.Event()

    def push(self, packet: av.Packet | av.AudioFrame) -> None:
        self._packets.append(packet)
        self._ready.set()

    async def recv(self) -> av.Packet | av.AudioFrame:
        while not self._packets:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        return self._packets.popleft()

    def stop(self) -> None:
        super().stop()
        # Wake a pending recv() so the sender's loop sees the track end.
        self._ready.set()
