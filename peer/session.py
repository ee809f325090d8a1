"""One WebRTC session with a media node, signaled WHIP/WHEP-style: POST an SDP offer
with the join token, get the answer and the session's URL; DELETE it to leave
(docs/media-contract.md, section 3). ICE is not trickled: the offer carries every
candidate."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame
from yarl import URL

from media_node.transport.receive import take_over_receiving

SDP = "application/sdp"


class Refused(Exception):
    """The node answered the offer with something other than 201."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body

    @property
    def code(self) -> str | None:
        try:
            error = json.loads(self.body).get("error")
        except (ValueError, AttributeError):
            return None
        return str(error) if error else None


async def post_offer(url: str, token: str | None, sdp: str,
                     content_type: str = SDP) -> tuple[int, str, dict[str, str]]:
    """POST an offer to a sessions URL; (status, body, headers), whatever the status."""
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as http, http.post(url, data=sdp,
                                                          headers=headers) as response:
        return response.status, await response.text(), dict(response.headers)


class MediaSession:
    """A peer connection with one media node: a microphone (optional), the audio heard,
    and the room's events from the data channel."""

    def __init__(self, ice_servers: list[dict[str, Any]] | None = None,
                 microphone: MediaStreamTrack | None = None,
                 on_message: Callable[[dict[str, Any]], None] | None = None,
                 decode: bool = True, relay_only: bool = False) -> None:
        """`decode=False`: the audio is counted as it arrives, never decoded (a crowd of
        listeners in one process, who only need to know that audio flows): `frames`
        counts RTP packets then, and `heard` stays empty. `relay_only`: ICE through the
        TURN servers alone, as on a network that lets nothing else through."""
        ice = [RTCIceServer(**server) for server in ice_servers or []]
        self.pc = RTCPeerConnection(RTCConfiguration(
            iceServers=ice, iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay_only
            else RTCIceTransportPolicy.ALL))
        self.channel = self.pc.createDataChannel("events")
        self.messages: list[dict[str, Any]] = []
        self.heard: list[tuple[float, np.ndarray]] = []
        self.frames = 0
        self.first_frame_at: float | None = None
        self.last_frame_at: float | None = None
        self.location: str | None = None
        self._microphone = microphone
        self._on_message = on_message
        self._readers: list[asyncio.Task[None]] = []
        self.channel.on("message", self._message)
        if decode:
            self.pc.on("track", lambda track: self._readers.append(
                asyncio.create_task(self._listen(track))))
        else:
            self.pc.on("track", self._count)

    def _count(self, track: MediaStreamTrack) -> None:
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.track is track:
                # The node's own receive path (transport/receive.py): each packet handed
                # over as it arrives, without aiortc's jitter buffer and decoder thread.
                take_over_receiving(transceiver.receiver, lambda _packet, at: self._arrived(at))

    def _arrived(self, now: float) -> None:
        self.frames += 1
        if self.first_frame_at is None:
            self.first_frame_at = now
        self.last_frame_at = now

    def _message(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            return
        if isinstance(message, dict):
            self.messages.append(message)
            if self._on_message is not None:
                self._on_message(message)

    async def _listen(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, AudioFrame)
            samples = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
            now = time.monotonic()
            self._arrived(now)
            self.heard.append((now, samples.astype(np.float64)))

    async def offer(self) -> str:
        """The offer: sendrecv audio (with the microphone, or none yet, so that a
        listener who is promoted speaks without renegotiating) and the data channel.
        Made once: ICE gathering (a TURN allocation) may be done before the join token
        is there, and `open` sends the same offer."""
        if self.pc.localDescription is None:
            self.pc.addTransceiver(self._microphone or "audio", direction="sendrecv")
            await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def open(self, sessions_url: str, token: str) -> None:
        """Join: POST the offer with the join token; raises Refused unless 201."""
        status, body, headers = await post_offer(sessions_url, token, await self.offer())
        if status != 201:
            raise Refused(status, body)
        self.location = str(URL(sessions_url).join(URL(headers["Location"])))
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))

    def speak(self, microphone: MediaStreamTrack) -> None:
        """Send `microphone` on the offered transceiver (after a promotion)."""
        self._microphone = microphone
        self.pc.getTransceivers()[0].sender.replaceTrack(microphone)

    @property
    def gone(self) -> bool:
        """The transport failed or closed."""
        return self.pc.connectionState in ("failed", "closed")

    def silent_for(self, now: float, since: float) -> float:
        """Seconds without a frame of audio, counted from `since` before the first."""
        return now - (self.last_frame_at if self.last_frame_at is not None else since)

    def heard_since(self, since: float) -> np.ndarray:
        frames = [samples for at, samples in self.heard if at >= since]
        return np.concatenate(frames) if frames else np.zeros(0)

    async def close(self, leave: bool = True) -> None:
        """Close the connection; with `leave`, DELETE the session first (a node that is
        gone does not answer, which is no matter)."""
        if leave and self.location is not None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                timeout = aiohttp.ClientTimeout(total=2)
                async with aiohttp.ClientSession(timeout=timeout) as http, \
                        http.delete(self.location):
                    pass
        for reader in self._readers:
            reader.cancel()
        await self.pc.close()
