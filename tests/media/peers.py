"""Test peers: aiortc clients that join a media node as a browser would, and listen."""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket, is_rtcp
from av import AudioFrame

from bench.media.tones import CYCLE_FRAMES, FRAME, SAMPLE_RATE, TIME_BASE, burst_cycle
from media_node.sessions import address_of

# A 100 ms window holds a whole number of cycles of 440, 550 and 660 Hz: no leakage.
WINDOW = 4800


class ToneTrack(MediaStreamTrack):
    """A microphone that hums one frequency, paced in real time."""

    kind = "audio"

    def __init__(self, hz: float, amplitude: float = 0.25) -> None:
        super().__init__()
        self._hz = hz
        self._amplitude = amplitude
        self._sent = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._sent / SAMPLE_RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        t = (self._sent + np.arange(FRAME)) / SAMPLE_RATE
        wave = self._amplitude * 32767 * np.sin(2 * np.pi * self._hz * t)
        frame = AudioFrame.from_ndarray(
            wave.astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._sent += FRAME
        return frame


class BurstTrack(MediaStreamTrack):
    """A microphone of tone bursts, Opus-encoded once up front so that aiortc only
    packetizes them: each burst's first packet leaves as `recv()` returns it, which is
    when its onset is noted. How late each packet left (this process being busy) is
    noted too: it is jitter the receiving end has to absorb."""

    kind = "audio"

    def __init__(self, hz: float = 440) -> None:
        super().__init__()
        self._payloads = burst_cycle(hz)
        self.onsets: list[float] = []
        self.lateness: list[tuple[float, float]] = []
        self._sent = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._sent * FRAME / SAMPLE_RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        now = time.monotonic()
        self.lateness.append((now, now - due))
        position = self._sent % CYCLE_FRAMES
        packet = av.Packet(self._payloads[position])
        packet.pts = self._sent * FRAME
        packet.time_base = TIME_BASE
        self._sent += 1
        if position == 0:
            self.onsets.append(now)
        return packet


def tone_level(samples: np.ndarray, hz: float) -> float:
    """Amplitude (as a fraction of full scale) of the `hz` component of `samples`."""
    if samples.size == 0:
        return 0.0
    window = np.hanning(samples.size)
    t = np.arange(samples.size) / SAMPLE_RATE
    component = np.sum(samples * window * np.exp(-2j * np.pi * hz * t))
    return float(2 * abs(component) / np.sum(window) / 32768)


def peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / SAMPLE_RATE)[int(np.argmax(spectrum))])


class Peer:
    """One participant: publishes a tone (or a given track) if given one, records what it
    hears and is told."""

    def __init__(
        self,
        base_url: str,
        space_id: str,
        tone_hz: float | None = None,
        track: MediaStreamTrack | None = None,
    ) -> None:
        self.base_url = base_url
        self.space_id = space_id
        self.tone_hz = tone_hz
        self.microphone = track if track is not None or tone_hz is None else ToneTrack(tone_hz)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = self.pc.createDataChannel("events")
        self.messages: list[dict[str, Any]] = []
        self.location: str | None = None
        self._heard: list[tuple[float, np.ndarray]] = []
        self._reader: asyncio.Task[None] | None = None
        self.channel.on("message", lambda m: self.messages.append(json.loads(m)))

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._reader = asyncio.create_task(self._listen(track))

    async def offer(self) -> str:
        if self.microphone is None:
            self.pc.addTransceiver("audio", direction="recvonly")
        else:
            self.pc.addTransceiver(self.microphone, direction="sendrecv")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

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
        while self.channel.readyState != "open" or not self._heard:
            if time.monotonic() > deadline:
                raise AssertionError(f"not connected: {self.pc.connectionState}")
            await asyncio.sleep(0.05)

    async def _listen(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, AudioFrame)
            data = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
            self._heard.append((time.monotonic(), data.astype(np.float64)))

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

    def heard_since(self, since: float) -> np.ndarray:
        frames = [samples for at, samples in self._heard if at >= since]
        return np.concatenate(frames) if frames else np.zeros(0)

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
        handle = receiver._handle_rtp_packet

        async def noted(packet: RtpPacket, arrival_time_ms: int) -> None:
            received.append((time.monotonic(), packet.payload))
            await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = noted  # type: ignore[method-assign]
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

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.pc.close()


async def post_offer(
    base_url: str, space_id: str, token: str | None, sdp: str, content_type: str = "application/sdp"
) -> tuple[int, str, dict[str, str]]:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{base_url}/media/spaces/{space_id}/sessions", data=sdp, headers=headers
        ) as response,
    ):
        return response.status, await response.text(), dict(response.headers)


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
        send = transport._send_rtp

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

        transport._send_rtp = impaired
