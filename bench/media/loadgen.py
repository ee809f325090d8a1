"""Load generator: lightweight listeners (and one speaker) in a process of their own.

Each listener is a real WebRTC peer for everything but its media: aiortc does its ICE
(including answering the node's consent checks) and DTLS, and the listener sends RTCP
receiver reports about what it got, as a browser's audio receiver does (about every
5 s). Its UDP datagrams are intercepted before aiortc's DTLS/SRTP layers, so RTP
packets are counted (sequence numbers give loss) and never jitter-buffered; once a
listener is in, its sockets are read in one pass with all the others (`Drain`). The
kernel's own drop counters of the listeners' sockets show whether the generator kept up
(`kernel_drops`). A few listeners of each join, the probes (spread over the join order,
so over the node's fan-out order too), also unprotect and decode what they get: speech
onsets are judged by decoded level. Packet sizes cannot tell them: near-silent audio
(the decoder's own noise of a few LSB) costs the mix encoder as many bytes as a tone's
first packet. A probe's packet costs this process many times a plain listener's (an
SRTP unprotect, an Opus decode, a level), hence at most a few per join.

The speaker runs in a process of its own (the orchestrator starts two generators):
sharing an event loop with a thousand listeners would make it send late whenever they
are busy, and the node's jitter buffer would rightly absorb that, as if it were the
node's latency. Both sides note onsets on the system-wide monotonic clock, and
`latencies` pairs them.

The orchestrator drives it with JSON lines on stdin and reads JSON lines on stdout:
`speaker`, `join {count, rate, probes}`, `snapshot`, `quit`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import select
import socket
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
import pylibsrtp
from aioice.ice import StunProtocol
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket, RtcpSdesPacket, RtcpSourceInfo

from media_node.audio.mixer import level_dbfs
from media_node.transport import aiortc_seams as seams
from peer.tones import SAMPLE_RATE, BurstTrack

# A decoded frame this loud holds the tone (0.3 of full scale is about -13 dBFS; the
# first frame of a burst, partly tone, about -18); silence decodes below -40.
LOUD_DBFS = -30.0
JOIN_TIMEOUT = 30.0
# libwebrtc's RTCP report interval for audio, randomised by half either way (RFC 3550).
REPORT_SECONDS = 5.0
SDES_CNAME = 1
DRAIN_SECONDS = 0.005
DATAGRAM_MAX = 4096


def latencies(sent: list[float], heard: list[float]) -> list[float]:
    """Onset to hearing, in ms: each onset heard is paired with the latest one sent
    before it (cycles are 500 ms apart)."""
    found = []
    for at in heard:
        before = [t for t in sent if t <= at]
        if before and at - before[-1] < 0.4:
            found.append(round((at - before[-1]) * 1000, 2))
    return found


def rtp_payload(packet: bytes) -> bytes:
    """The payload of a plain RTP packet: after the CSRCs and any header extension."""
    start = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        start += 4 + 4 * int.from_bytes(packet[start + 2 : start + 4], "big")
    return packet[start:]


@dataclass
class Listener:
    """Counts what one listener receives, from the datagram layer; a probe also hears it."""

    received: int = 0
    highest: int = 0
    first_seq: int | None = None
    last_seq: int = 0
    first_at: float | None = None
    loud: bool = False
    onsets: list[float] = field(default_factory=list)
    dtls: RTCDtlsTransport | None = None
    decoder: av.AudioCodecContext | None = None
    ssrc: int = 0
    # The inodes of its sockets, to find their drop counters in /proc/net/udp.
    inodes: list[int] = field(default_factory=list)
    next_report: float = 0.0
    reported_expected: int = 0
    reported_received: int = 0
    cname: bytes = field(default_factory=lambda: uuid.uuid4().hex.encode())

    def count(self, data: bytes) -> None:
        sequence = (data[2] << 8) | data[3]
        if self.first_seq is None:
            self.first_seq = self.last_seq = sequence
            self.first_at = time.monotonic()
            self.ssrc = int.from_bytes(data[8:12], "big")
        else:
            step = (sequence - self.last_seq) & 0xFFFF
            # Forward steps extend the highest sequence number; late ones don't.
            if step < 0x8000:
                self.highest += step
                self.last_seq = sequence
        self.received += 1
        if self.dtls is not None and seams.srtp_sessions(self.dtls)[1] is not None:
            self.hear(data, time.monotonic())

    def hear(self, data: bytes, now: float) -> None:
        assert self.dtls is not None
        if self.decoder is None:
            codec = av.CodecContext.create("libopus", "r")
            assert isinstance(codec, av.AudioCodecContext)
            codec.sample_rate = SAMPLE_RATE
            codec.layout = "mono"
            self.decoder = codec
        try:
            inbound = seams.srtp_sessions(self.dtls)[1]
            assert inbound is not None
            payload = rtp_payload(inbound.unprotect(data))
            frames = self.decoder.decode(av.Packet(payload)) if payload else []
        except (pylibsrtp.Error, av.FFmpegError):
            return
        samples = [frame.to_ndarray().reshape(-1) for frame in frames]
        loud = bool(samples) and level_dbfs(np.concatenate(samples)) > LOUD_DBFS
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


def is_rtp(data: bytes) -> bool:
    # RFC 7983: 128-191 is RTP or RTCP; RTCP's packet types put 192-223 next.
    return 127 < data[0] < 192 and not 191 < data[1] < 224


def intercept_rtp(pc: RTCPeerConnection, listener: Listener, probe: bool) -> None:
    """Count RTP at the UDP layer; STUN, DTLS and RTCP still go to aiortc. A probe
    unprotects RTP with its DTLS transport's keys, which aiortc then never sees."""
    dtls = pc.getTransceivers()[0].receiver.transport
    if probe:
        listener.dtls = dtls
    connection = seams.ice_connection(dtls)
    for protocol in seams.protocols(connection):
        listener.inodes.append(
            os.fstat(protocol.transport.get_extra_info("socket").fileno()).st_ino
        )
        original = protocol.datagram_received

        def received(
            data: bytes,
            addr: tuple[str, int],
            original: Callable[[bytes, tuple[str, int]], None] = original,
        ) -> None:
            if is_rtp(data):
                listener.count(data)
            else:
                original(data, addr)

        seams.tap_datagrams(protocol, received)


class Drain:
    """Reads the sockets of listeners that are in, all of them in one pass every
    DRAIN_SECONDS, instead of asyncio reading each datagram as its socket becomes ready.

    asyncio makes, schedules and runs a handle per datagram. Measured on this machine,
    bare sockets (1000, 50 datagrams/s each) cost 11.6 µs of CPU per datagram that way
    and 3.0 µs read like this; in this generator, with each listener's ICE and RTCP
    besides, 1000 listeners took 31% of its core instead of 36-37%. The node spends
    about as much per packet as the generator, so every bit moves the point where the
    generator, not the node, runs out of its core. Every datagram still reaches its
    protocol's handler (STUN to aioice, RTCP to aiortc, RTP counted), a few ms late at
    most, which no timer of ICE or RTCP notices. A listener moves here once its first
    packet came (its join is timed on arrival); probes stay with asyncio, their onsets
    timed on arrival too.

    One datagram per ready socket per pass: a second read would nearly always fail, and
    a failed read (an exception) costs as much as a datagram. A socket with more queued
    stays ready for the next pass, 5 ms later; packets come every 20 ms.

    Ready sockets are found with poll(2), not epoll: epoll leaves an entry on each
    socket's wait queue, and the kernel runs its callback for every datagram, on
    loopback in the sender's system call, so as CPU time of the node under test (about
    a microsecond a packet here). A poll with no timeout leaves nothing behind; its
    pass costs this process about 0.08 µs per socket. Only the socket of the nominated
    pair moves here: the others carry nothing once ICE is done.
    """

    def __init__(self) -> None:
        self.poll = select.poll()
        self.sockets: dict[int, tuple[socket.socket, Listener, StunProtocol]] = {}
        self.task: asyncio.Task[None] | None = None

    def add(self, pc: RTCPeerConnection, listener: Listener) -> None:
        connection = seams.ice_connection(pc.getTransceivers()[0].receiver.transport)
        pair = seams.nominated_pair(connection)
        for protocol in [pair.protocol] if pair is not None else seams.protocols(connection):
            transport = protocol.transport
            # asyncio's own reading stops; its transport still sends and closes it.
            transport.pause_reading()  # type: ignore[attr-defined]
            sock: socket.socket = transport._sock  # type: ignore[attr-defined]
            self.sockets[sock.fileno()] = (sock, listener, protocol)
            self.poll.register(sock.fileno(), select.POLLIN)
        if self.task is None:
            self.task = asyncio.create_task(self.run())

    async def run(self) -> None:
        while True:
            for fd, _ in self.poll.poll(0):
                sock, listener, protocol = self.sockets[fd]
                if sock.fileno() != fd:
                    # Closed by aiortc (its peer connection ended). A poll set keeps a
                    # closed descriptor, whose number may be another socket's by now.
                    self.poll.unregister(fd)
                    del self.sockets[fd]
                    continue
                try:
                    # Past the handshake, only RTP, RTCP and STUN come, all small.
                    data, addr = sock.recvfrom(DATAGRAM_MAX)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    protocol.error_received(exc)
                    continue
                # The protocol's handler would do the same, one call later.
                if is_rtp(data):
                    listener.count(data)
                else:
                    protocol.datagram_received(data, addr)
            await asyncio.sleep(DRAIN_SECONDS)


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
        self._drain = Drain()
        self._joined = 0
        self._drops: dict[int, int] = {}

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
        pc.addTransceiver(BurstTrack(onsets=self.speaker_onsets, warmup_cycles=4),
                          direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        await self.post(pc, self.token(f"u_speaker_{self.name}", "host"))
        self.peers.append(pc)
        return {"speaker": True}

    async def join_one(self, index: int, probe: bool) -> tuple[float, float] | None:
        """Join one listener; (offer-to-answer, offer-to-first-packet) in seconds."""
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        listener = Listener()
        intercept_rtp(pc, listener, probe)
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
        if not probe:
            self._drain.add(pc, listener)
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
                    report = listener.receiver_report(seams.sender_ssrc(transceiver.sender))
                    try:
                        await seams.rtp_output(transport)(report)
                    except ConnectionError:
                        # Closed since the check (the server dropped it): this one
                        # listener stops reporting, the others go on.
                        continue
                    self.reports_sent += 1

    def kernel_drops(self) -> int:
        """Datagrams the kernel dropped for this generator's full socket buffers, so far.

        Kept per socket and only ever added to: a socket that closed takes its counter
        out of /proc/net/udp, and the table, read while sockets come and go, may skip
        or repeat a line.
        """
        inodes = {inode for listener in self.listeners for inode in listener.inodes}
        for table in ("/proc/net/udp", "/proc/net/udp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                inode = int(fields[9])
                if inode in inodes:
                    self._drops[inode] = max(self._drops.get(inode, 0), int(fields[12]))
        return sum(self._drops.values())

    async def join(self, count: int, rate: float, probes: int) -> dict[str, Any]:
        """`count` listeners at `rate` a second, `probes` of them spread evenly."""
        spacing = max(1, count // probes) if probes else 0
        tasks = []
        for index in range(count):
            probe = bool(spacing) and index % spacing == 0 and index // spacing < probes
            tasks.append(asyncio.create_task(self.join_one(self._joined, probe)))
            self._joined += 1
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
        """Totals so far; the onsets heard since the last snapshot, the latest ones sent."""
        now = time.monotonic()
        heard = [
            at
            for listener in self.listeners
            for at in listener.onsets
            if self._latency_from <= at < now
        ]
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
            "sent": sorted(self.speaker_onsets)[-50:],
            "heard": heard,
        }


# --- Janus signaling mode (bench/media/janus.py) --------------------------------------
# The same speaker and listeners, joined to a Janus AudioBridge room through Janus's
# HTTP/JSON API instead of the node's WHIP-like endpoint. One Janus session carries every
# participant of this process as a handle of its own (one PeerConnection each), as a
# server-side orchestrator would; a long poll on the session brings the plugin's
# asynchronous replies, matched to requests by transaction. Listeners are the same aiortc
# peers with DTLS keys of their own, so probes among them hear Janus's mix as they hear
# the node's.


class JanusLoadGenerator(LoadGenerator):
    """Participants of one AudioBridge room: the speaker unmuted, listeners muted."""

    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(
            {"url": settings["janus"]["url"], "space": "", "node_id": "", "private_key": ""}
            | settings
        )
        self.room: int = settings["janus"]["room"]
        self.session: int | None = None
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.poller: asyncio.Task[None] | None = None
        self.creating = asyncio.Lock()

    def token(self, user: str, role: str) -> str:
        # AudioBridge rooms here are open: a participant's "token" is its join request.
        # It has no receive-only mode, so a listener is a muted participant.
        return json.dumps({"display": user, "muted": role == "listener"})

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A Janus request; for a plugin message, waits for the plugin's event reply."""
        http = await self.http()
        transaction = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[transaction] = future
        try:
            async with http.post(
                f"{self.url}{path}", json={**body, "transaction": transaction}
            ) as response:
                reply: dict[str, Any] = await response.json(content_type=None)
            if reply.get("janus") == "ack":
                reply = await asyncio.wait_for(future, JOIN_TIMEOUT)
        finally:
            self.pending.pop(transaction, None)
        if reply.get("janus") not in ("success", "event") or "error" in reply:
            raise RuntimeError(f"janus refused {body.get('janus')}: {reply}")
        return reply

    async def poll(self) -> None:
        """Long-poll the session's events (also what keeps the session alive)."""
        http = await self.http()
        while True:
            try:
                async with http.get(
                    f"{self.url}/{self.session}", params={"maxev": "100"}
                ) as response:
                    events = await response.json(content_type=None)
            except TimeoutError:
                continue  # no event in the poll's 30 s: Janus answers with a keepalive
            except (aiohttp.ClientError, ValueError):
                await asyncio.sleep(0.1)
                continue
            for event in events if isinstance(events, list) else [events]:
                future = self.pending.get(event.get("transaction", ""))
                if future is not None and not future.done():
                    future.set_result(event)

    async def post(self, pc: RTCPeerConnection, token: str) -> None:
        """Attach a handle and join with the offer; the answer comes as the join's event.

        The join time the harness reports (offer to answer) covers both requests.
        """
        async with self.creating:
            if self.session is None:
                self.session = (await self.call("", {"janus": "create"}))["data"]["id"]
                self.poller = asyncio.create_task(self.poll())
        attached = await self.call(
            f"/{self.session}", {"janus": "attach", "plugin": "janus.plugin.audiobridge"}
        )
        reply = await self.call(
            f"/{self.session}/{attached['data']['id']}",
            {
                "janus": "message",
                "body": {"request": "join", "room": self.room, **json.loads(token)},
                "jsep": {"type": "offer", "sdp": pc.localDescription.sdp},
            },
        )
        data = reply.get("plugindata", {}).get("data", {})
        if data.get("audiobridge") != "joined" or "jsep" not in reply:
            raise RuntimeError(f"join refused: {data}")
        await pc.setRemoteDescription(
            RTCSessionDescription(sdp=reply["jsep"]["sdp"], type=reply["jsep"]["type"])
        )


async def main() -> None:
    settings = json.loads(sys.argv[1])
    generator = (JanusLoadGenerator if "janus" in settings else LoadGenerator)(settings)
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
            reply = await generator.join(command["count"], command["rate"], command["probes"])
        elif op == "snapshot":
            reply = generator.snapshot()
        else:
            reply = {"error": f"unknown op {op}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
