"""Load generator: lightweight listeners (and one speaker) in a process of their own.

Each listener is a real WebRTC peer for everything but its media: aiortc does its ICE
(including answering the node's consent checks) and DTLS, and the listener sends RTCP
receiver reports about what it got, as a browser's audio receiver does (about every
5 s). Its UDP datagrams are intercepted before aiortc's DTLS/SRTP layers, so RTP
packets are counted (sequence numbers give loss, sizes give speech onsets) and never
unprotected, jitter-buffered or decoded. What is left per packet is mostly the
kernel's receive path, which on loopback costs about what the node's send path does;
the kernel's own drop counters of the listeners' sockets show whether the generator
kept up (`kernel_drops`).

The orchestrator drives it with JSON lines on stdin and reads JSON lines on stdout:
`speaker`, `join {count, rate}`, `snapshot`, `quit`.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import av
import jwt
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket, RtcpSdesPacket, RtcpSourceInfo

SAMPLE_RATE = 48000
FRAME = 960
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
# The speaker's cycle: a 200 ms tone, then 300 ms of silence.
TONE_FRAMES = 10
CYCLE_FRAMES = 25
# The node's mix encoder makes packets of a few bytes for silence and of about 80 for
# the tone; a datagram is the payload plus 30 bytes (RTP header, mid extension, SRTP tag).
LOUD_DATAGRAM = 70
JOIN_TIMEOUT = 30.0
# libwebrtc's RTCP report interval for audio, randomised by half either way (RFC 3550).
REPORT_SECONDS = 5.0
SDES_CNAME = 1


def opus_cycle() -> list[bytes]:
    """One speaker cycle, Opus-encoded once: sent over and over, never re-encoded."""
    codec = av.CodecContext.create("libopus", "w")
    assert isinstance(codec, av.AudioCodecContext)
    codec.sample_rate = SAMPLE_RATE
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = 32000
    codec.time_base = TIME_BASE
    payloads: list[bytes] = []
    for index in range(CYCLE_FRAMES * 4):
        t = (index * FRAME + np.arange(FRAME)) / SAMPLE_RATE
        loud = index % CYCLE_FRAMES < TONE_FRAMES
        wave = 0.3 * 32767 * np.sin(2 * np.pi * 440 * t) if loud else np.zeros(FRAME)
        frame = av.AudioFrame.from_ndarray(
            wave.astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = TIME_BASE
        frame.pts = index * FRAME
        payloads.extend(bytes(p) for p in codec.encode(frame))
    # The first cycles warm the encoder up; keep the last one, which starts on a cycle.
    return payloads[-CYCLE_FRAMES:]


class BurstTrack(MediaStreamTrack):
    """A microphone of pre-encoded tone bursts, paced in real time; notes each onset."""

    kind = "audio"

    def __init__(self, onsets: list[float]) -> None:
        super().__init__()
        self._payloads = opus_cycle()
        self._onsets = onsets
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._index * FRAME / SAMPLE_RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        position = self._index % CYCLE_FRAMES
        packet = av.Packet(self._payloads[position])
        packet.pts = self._index * FRAME
        packet.time_base = TIME_BASE
        self._index += 1
        if position == 0:
            # aiortc packetizes and sends this packet right after recv() returns.
            self._onsets.append(time.monotonic())
        return packet


@dataclass
class Listener:
    """Counts what one listener receives, from the datagram layer."""

    received: int = 0
    highest: int = 0
    first_seq: int | None = None
    last_seq: int = 0
    first_at: float | None = None
    loud: bool = False
    onsets: list[float] = field(default_factory=list)
    ssrc: int = 0
    # The inodes of its sockets, to find their drop counters in /proc/net/udp.
    inodes: list[int] = field(default_factory=list)
    next_report: float = 0.0
    reported_expected: int = 0
    reported_received: int = 0
    cname: bytes = field(default_factory=lambda: uuid.uuid4().hex.encode())

    def count(self, data: bytes) -> None:
        now = time.monotonic()
        sequence = (data[2] << 8) | data[3]
        if self.first_seq is None:
            self.first_seq = self.last_seq = sequence
            self.first_at = now
            self.ssrc = int.from_bytes(data[8:12], "big")
        else:
            step = (sequence - self.last_seq) & 0xFFFF
            # Forward steps extend the highest sequence number; late ones don't.
            if step < 0x8000:
                self.highest += step
                self.last_seq = sequence
        self.received += 1
        loud = len(data) > LOUD_DATAGRAM
        if loud and not self.loud:
            self.onsets.append(now)
        self.loud = loud

    @property
    def expected(self) -> int:
        return 0 if self.first_seq is None else self.highest + 1

    def receiver_report(self, ssrc: int) -> bytes:
        """RR + SDES about the node's stream since the last one, as a browser sends them."""
        expected = self.expected - self.reported_expected
        lost = expected - (self.received - self.reported_received)
        self.reported_expected, self.reported_received = self.expected, self.received
        block = RtcpReceiverInfo(
            ssrc=self.ssrc,
            fraction_lost=min(255, max(0, 256 * lost // expected)) if expected > 0 else 0,
            packets_lost=max(0, self.expected - self.received),
            # RFC 3550 6.4.1: the extended highest sequence number received.
            highest_sequence=((self.first_seq or 0) + self.highest) & 0xFFFFFFFF,
            jitter=0,
            lsr=0,
            dlsr=0,
        )
        description = RtcpSourceInfo(ssrc=ssrc, items=[(SDES_CNAME, self.cname)])
        return bytes(RtcpRrPacket(ssrc=ssrc, reports=[block])) + bytes(
            RtcpSdesPacket(chunks=[description])
        )


def intercept_rtp(pc: RTCPeerConnection, listener: Listener) -> None:
    """Count RTP at the UDP layer; STUN, DTLS and RTCP still go to aiortc."""
    connection = pc.getTransceivers()[0].receiver.transport.transport._connection
    for protocol in connection._protocols:
        listener.inodes.append(
            os.fstat(protocol.transport.get_extra_info("socket").fileno()).st_ino
        )
        original = protocol.datagram_received

        def received(
            data: bytes,
            addr: tuple[str, int],
            original: Callable[[bytes, tuple[str, int]], None] = original,
        ) -> None:
            # RFC 7983: 128-191 is RTP or RTCP; RTCP's packet types put 192-223 next.
            if 127 < data[0] < 192 and not 191 < data[1] < 224:
                listener.count(data)
            else:
                original(data, addr)

        protocol.datagram_received = received  # type: ignore[method-assign,assignment]


class LoadGenerator:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.url: str = settings["url"]
        self.space: str = settings["space"]
        self.node_id: str = settings["node_id"]
        self.key: str = settings["private_key"]
        self.name: str = settings["name"]
        self.listeners: list[Listener] = []
        self.peers: list[RTCPeerConnection] = []
        self.speaker_onsets: list[float] = []
        self.reports_sent = 0
        self._latency_from = 0.0
        self._http: aiohttp.ClientSession | None = None
        self._reporter: asyncio.Task[None] | None = None
        self._reporting: list[tuple[Listener, RTCPeerConnection]] = []

    def token(self, user: str, role: str) -> str:
        now = time.time()
        claims = {
            "iss": "parlor-control-plane",
            "aud": "parlor-media",
            "sub": user,
            "space": self.space,
            "role": role,
            "node": self.node_id,
            "muted": False,
            "iat": int(now),
            "exp": int(now + 60),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self.key, algorithm="EdDSA")

    async def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=JOIN_TIMEOUT),
            )
        return self._http

    async def post(self, pc: RTCPeerConnection, token: str) -> None:
        http = await self.http()
        async with http.post(
            f"{self.url}/media/spaces/{self.space}/sessions",
            data=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
        ) as response:
            body = await response.text()
            if response.status != 201:
                raise RuntimeError(f"join refused: {response.status} {body}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))

    async def speaker(self) -> dict[str, Any]:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver(BurstTrack(self.speaker_onsets), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        await self.post(pc, self.token(f"u_speaker_{self.name}", "host"))
        self.peers.append(pc)
        return {"speaker": True}

    async def join_one(self, index: int) -> tuple[float, float] | None:
        """Join one listener; (offer-to-answer, offer-to-first-packet) in seconds."""
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        listener = Listener()
        intercept_rtp(pc, listener)
        self.peers.append(pc)
        started = time.monotonic()
        try:
            await self.post(pc, self.token(f"u_{self.name}_{index}", "listener"))
        except (TimeoutError, RuntimeError, aiohttp.ClientError):
            return None
        answered = time.monotonic()
        self.listeners.append(listener)
        while listener.first_at is None:
            if time.monotonic() - started > JOIN_TIMEOUT:
                return None
            await asyncio.sleep(0.01)
        listener.next_report = time.monotonic() + REPORT_SECONDS * random.random()
        self._reporting.append((listener, pc))
        if self._reporter is None:
            self._reporter = asyncio.create_task(self._report())
        return answered - started, listener.first_at - started

    async def _report(self) -> None:
        """Each receiving listener's receiver reports, each on a clock of its own."""
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            for listener, pc in self._reporting:
                if listener.next_report > now:
                    continue
                listener.next_report = now + REPORT_SECONDS * (0.5 + random.random())
                transceiver = pc.getTransceivers()[0]
                transport = transceiver.receiver.transport
                if transport.state == "connected":
                    # aiortc's receiver would send these itself had it seen the RTP.
                    report = listener.receiver_report(transceiver.sender._ssrc)
                    await transport._send_rtp(report)
                    self.reports_sent += 1

    def kernel_drops(self) -> int:
        """Datagrams the kernel dropped for this generator's full socket buffers."""
        inodes = {inode for listener in self.listeners for inode in listener.inodes}
        drops = 0
        for table in ("/proc/net/udp", "/proc/net/udp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[9]) in inodes:
                    drops += int(fields[12])
        return drops

    async def join(self, count: int, rate: float) -> dict[str, Any]:
        first = len(self.listeners) + len(self.peers)
        tasks = []
        for index in range(count):
            tasks.append(asyncio.create_task(self.join_one(first + index)))
            await asyncio.sleep(1.0 / rate)
        results = await asyncio.gather(*tasks)
        joined = [r for r in results if r is not None]
        return {
            "joined": len(joined),
            "failed": count - len(joined),
            "answer_ms": [round(a * 1000, 1) for a, _ in joined],
            "join_ms": [round(j * 1000, 1) for _, j in joined],
        }

    def snapshot(self) -> dict[str, Any]:
        """Totals so far, and the speech-onset latencies seen since the last snapshot."""
        now = time.monotonic()
        latencies = []
        onsets = sorted(self.speaker_onsets)
        for listener in self.listeners:
            for heard in listener.onsets:
                if heard < self._latency_from:
                    continue
                # The latest onset sent before this one was heard (cycles are 500 ms).
                sent = [t for t in onsets[-50:] if t <= heard]
                if sent and heard - sent[-1] < 0.4:
                    latencies.append(round((heard - sent[-1]) * 1000, 2))
        self._latency_from = now
        return {
            "listeners": len(self.listeners),
            "receiving": sum(1 for listener in self.listeners if listener.received),
            "received": sum(listener.received for listener in self.listeners),
            "expected": sum(listener.expected for listener in self.listeners),
            # Not zero: this generator, not the node, lost datagrams.
            "kernel_drops": self.kernel_drops(),
            "receiver_reports_sent": self.reports_sent,
            "cpu": time.process_time(),
            "at": now,
            "latency_ms": latencies,
        }


async def main() -> None:
    generator = LoadGenerator(json.loads(sys.argv[1]))
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        command = json.loads(line)
        op = command["op"]
        if op == "quit":
            return
        if op == "speaker":
            reply = await generator.speaker()
        elif op == "join":
            reply = await generator.join(command["count"], command["rate"])
        elif op == "snapshot":
            reply = generator.snapshot()
        else:
            reply = {"error": f"unknown op {op}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
