"""Test peers: aiortc clients that join a media node as a browser would, and listen,
with what the tests watch besides (built on peer/, the project's Python client)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import numpy as np
from aiortc import (
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RtpPacket, is_rtcp

from media_node.sessions import address_of
from media_node.transport import aiortc_seams as seams
from peer.session import MediaSession
from peer.session import post_offer as post_to
from peer.tones import ToneTrack, tone_level

# A 100 ms window holds a whole number of cycles of 440, 550 and 660 Hz: no leakage.
WINDOW = 4800


class Peer(MediaSession):
    """One participant: publishes a tone (or a given track) if given one, records what it
    hears and is told. A listener offers receive-only audio (the browser client offers
    send-and-receive so that it can be promoted without renegotiating)."""

    def __init__(
        self,
        base_url: str,
        space_id: str,
        tone_hz: float | None = None,
        track: MediaStreamTrack | None = None,
    ) -> None:
        self.microphone = track if track is not None or tone_hz is None else ToneTrack(tone_hz)
        super().__init__([], self.microphone)
        self.base_url = base_url
        self.space_id = space_id
        self.tone_hz = tone_hz

    async def offer(self) -> str:
        if self.microphone is None:
            self.pc.addTransceiver("audio", direction="recvonly")
        else:
            self.pc.addTransceiver(self.microphone, direction="sendrecv")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def join(self, token: str, sdp: str | None = None) -> None:
        """POST the offer; raises for any answer other than 201."""
        offer = sdp if sdp is not None else await self.offer()
        status, body, headers = await post_offer(self.base_url, self.space_id, token, offer)
        if status != 201:
            raise AssertionError(f"join refused: {status} {body}")
        self.location = headers["Location"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))

    async def publish(self, hz: float) -> int:
        """Once promoted: send a tone on the existing transceiver and PATCH the session
        with the new offer; the answer applied when the node accepts. The PATCH status."""
        assert self.location is not None, "publish after join"
        transceiver = self.pc.getTransceivers()[0]
        transceiver.direction = "sendrecv"
        transceiver.sender.replaceTrack(ToneTrack(hz))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with (
            aiohttp.ClientSession(self.base_url) as http,
            http.patch(
                self.location,
                data=self.pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp"},
            ) as response,
        ):
            if response.status == 200:
                answer = await response.text()
                await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            return response.status

    async def connected(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.channel.readyState != "open" or not self.heard:
            if time.monotonic() > deadline:
                raise AssertionError(f"not connected: {self.pc.connectionState}")
            await asyncio.sleep(0.05)

    @property
    def worker(self) -> int:
        """The worker of its node the session is on (the session id says)."""
        assert self.location is not None, "not joined"
        address = address_of(self.location.rsplit("/", 1)[1])
        assert address is not None, self.location
        return address.worker

    @property
    def node_id(self) -> str:
        assert self.location is not None, "not joined"
        address = address_of(self.location.rsplit("/", 1)[1])
        assert address is not None, self.location
        return address.node_id

    async def leave(self) -> int:
        """DELETE the session, as a client that leaves does; the status."""
        assert self.location is not None, "not joined"
        async with (
            aiohttp.ClientSession(self.base_url) as http,
            http.delete(self.location) as response,
        ):
            return response.status

    def recent(self, seconds: float = 0.5) -> np.ndarray:
        return self.heard_since(time.monotonic() - seconds)

    async def hear(self, hz: float, present: bool, timeout: float = 5.0) -> float:
        """Wait until the tone is (or is no longer) in the last 100 ms heard; the delay."""
        start = time.monotonic()
        while True:
            window = self.heard_since(time.monotonic() - 0.12)[-WINDOW:]
            if window.size == WINDOW and (tone_level(window, hz) > 0.02) == present:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                state = "present" if present else "absent"
                raise AssertionError(f"{hz} Hz not {state} after {timeout} s")
            await asyncio.sleep(0.02)

    def record_rtp(self) -> list[tuple[float, bytes]]:
        """Note every RTP packet (arrival time, payload) as it reaches this peer, before
        aiortc's own jitter buffer holds it."""
        received: list[tuple[float, bytes]] = []
        receiver = self.pc.getReceivers()[0]
        handle = seams.packet_handler(receiver)

        async def noted(packet: RtpPacket, arrival_time_ms: int) -> None:
            received.append((time.monotonic(), packet.payload))
            await handle(packet, arrival_time_ms)

        seams.replace_packet_handler(receiver, noted)
        return received

    async def sender_stats(self, kind: str) -> Any:
        """This peer's sender's latest stats of `kind` (e.g. "remote-inbound-rtp")."""
        for stats in (await self.pc.getSenders()[0].getStats()).values():
            if stats.type == kind:
                return stats
        return None

    def told(self, kind: str, **fields: Any) -> bool:
        return any(
            m.get("type") == kind and all(m.get(k) == v for k, v in fields.items())
            for m in self.messages
        )

    async def wait_told(self, kind: str, timeout: float = 5.0, **fields: Any) -> None:
        deadline = time.monotonic() + timeout
        while not self.told(kind, **fields):
            if time.monotonic() > deadline:
                raise AssertionError(f"never told {kind} {fields}; got {self.messages}")
            await asyncio.sleep(0.05)

    async def wait_told_speaking(self, user_id: str, timeout: float = 5.0) -> None:
        """Wait until told that `user_id` speaks: as it starts, or in the welcome when
        they already were by the time this peer's channel opened."""
        deadline = time.monotonic() + timeout
        while not self.told("speaking_started", user_id=user_id) and not any(
            m.get("type") == "welcome" and user_id in m.get("speaking", []) for m in self.messages
        ):
            if time.monotonic() > deadline:
                raise AssertionError(f"never told {user_id} speaks; got {self.messages}")
            await asyncio.sleep(0.05)

    async def wait_closed(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.pc.connectionState not in ("closed", "failed"):
            if time.monotonic() > deadline:
                raise AssertionError(f"still {self.pc.connectionState}")
            await asyncio.sleep(0.05)

    async def close(self) -> None:  # type: ignore[override]
        """Close without leaving (a test that leaves calls `leave`)."""
        await super().close(leave=False)


class Impairment:
    """What happens to a peer's outbound RTP on the way out: drops, swaps and pauses.

    Applied where aiortc's sender hands each serialized packet to the DTLS transport, so
    everything else (SRTP, RTCP, ICE) is as in a real peer.
    """

    def __init__(self, peer: Peer) -> None:
        self.lose: Callable[[int], bool] = lambda index: False
        self.swap: Callable[[int], bool] = lambda index: False
        self.lost = 0
        self.swapped = 0
        self._count = 0
        self._held: bytes | None = None
        transport = peer.pc.getSenders()[0].transport
        send = seams.rtp_output(transport)

        async def impaired(data: bytes) -> None:
            if is_rtcp(data):
                await send(data)
                return
            index = self._count
            self._count += 1
            if self.lose(index):
                self.lost += 1
                return
            if self._held is None and self.swap(index):
                self._held = data
                self.swapped += 1
                return
            await send(data)
            if self._held is not None:
                held, self._held = self._held, None
                await send(held)

        seams.replace_rtp_output(transport, impaired)


async def post_offer(
    base_url: str, space_id: str, token: str | None, sdp: str, content_type: str = "application/sdp"
) -> tuple[int, str, dict[str, str]]:
    """POST an offer to a node's sessions of a Space (peer.session.post_offer)."""
    return await post_to(f"{base_url}/media/spaces/{space_id}/sessions", token, sdp, content_type)
