"""The fast fan-out path: what it puts on the wire, and that peers hear through it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiortc import RTCRtpCodecParameters, RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtcrtpparameters import RTCRtcpParameters, RTCRtpSendParameters
from aiortc.rtp import HeaderExtensionsMap, RtcpPacket, RtcpSdesPacket, RtcpSrPacket, RtpPacket
from pylibsrtp import Policy, Session

from media_node.rtp_fanout import MID_URI, RtpStream, StreamGone, send_to_all

from .conftest import NodeProcess
from .peers import Peer, peak_hz

KEY = bytes(range(30))
MID_ID = 9


def srtp(direction: int) -> Session:
    policy = Policy(key=KEY, ssrc_type=direction)
    policy.allow_repeat_tx = True
    return Session(policy)


class FakePeer:
    """What RtpStream reads from aiortc, over real sockets and real SRTP."""

    def __init__(self, ssrc: int) -> None:
        self.local = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.local.bind(("127.0.0.1", 0))
        self.remote = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.remote.bind(("127.0.0.1", 0))
        self.remote.settimeout(2)
        pair = SimpleNamespace(
            protocol=SimpleNamespace(
                transport=SimpleNamespace(get_extra_info=lambda name: self.local)
            ),
            remote_addr=self.remote.getsockname(),
        )
        self.dtls = SimpleNamespace(
            state="connected",
            _tx_srtp=srtp(Policy.SSRC_ANY_OUTBOUND),
            transport=SimpleNamespace(_connection=SimpleNamespace(_nominated={1: pair})),
        )
        self.sender: Any = SimpleNamespace(_ssrc=ssrc, transport=self.dtls)
        self.parameters = RTCRtpSendParameters(
            codecs=[RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, payloadType=111)],
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=MID_ID, uri=MID_URI)],
            muxId="0",
            rtcp=RTCRtcpParameters(cname="node-cname"),
        )
        self.inbound = srtp(Policy.SSRC_ANY_INBOUND)

    def receive(self) -> RtpPacket:
        extensions = HeaderExtensionsMap()
        extensions.configure(
            RTCRtpParameters(
                headerExtensions=[RTCRtpHeaderExtensionParameters(id=MID_ID, uri=MID_URI)]
            )
        )
        data = self.inbound.unprotect(self.remote.recv(2048))
        return RtpPacket.parse(data, extensions)

    def receive_rtcp(self) -> list[Any]:
        return RtcpPacket.parse(self.inbound.unprotect_rtcp(self.remote.recv(2048)))

    def close(self) -> None:
        self.local.close()
        self.remote.close()


@pytest.fixture
def fake_peers() -> Iterator[Callable[[int], FakePeer]]:
    made: list[FakePeer] = []

    def make(ssrc: int) -> FakePeer:
        made.append(FakePeer(ssrc))
        return made[-1]

    yield make
    for peer in made:
        peer.close()


def test_each_stream_gets_its_own_header_and_keys_and_a_dead_one_is_skipped(
    fake_peers: Callable[[int], FakePeer],
) -> None:
    first, gone, last = fake_peers(1111), fake_peers(2222), fake_peers(3333)
    streams = [RtpStream(peer.sender, peer.parameters) for peer in (first, gone, last)]
    streams[1].close()

    for pts in (0, 960):
        assert send_to_all(streams, b"opus-payload", pts) == 2

    for peer, stream in ((first, streams[0]), (last, streams[2])):
        packets = [peer.receive(), peer.receive()]
        assert [p.ssrc for p in packets] == [peer.sender._ssrc] * 2
        assert [p.payload_type for p in packets] == [111, 111]
        assert [p.payload for p in packets] == [b"opus-payload"] * 2
        assert packets[1].sequence_number == (packets[0].sequence_number + 1) & 0xFFFF
        assert packets[0].timestamp == stream.timestamp_origin
        assert packets[1].timestamp == (stream.timestamp_origin + 960) & 0xFFFFFFFF
        assert packets[0].extensions.mid == "0"
        assert stream.sent == 2
        assert stream.octets == 2 * len(b"opus-payload")
    assert streams[1].dropped == 2
    assert streams[1].sent == 0

    streams[0].send_report(ntp_time=123456789, pts=960)
    report, description = first.receive_rtcp()
    assert isinstance(report, RtcpSrPacket)
    assert report.ssrc == 1111
    assert report.sender_info.packet_count == 2
    assert report.sender_info.octet_count == 2 * len(b"opus-payload")
    assert report.sender_info.ntp_timestamp == 123456789
    assert report.sender_info.rtp_timestamp == (streams[0].timestamp_origin + 960) & 0xFFFFFFFF
    assert isinstance(description, RtcpSdesPacket)
    assert description.chunks[0].items == [(1, b"node-cname")]


def test_a_stream_is_refused_or_stopped_once_dtls_is_not_connected(
    fake_peers: Callable[[int], FakePeer],
) -> None:
    peer = fake_peers(4444)
    stream = RtpStream(peer.sender, peer.parameters)
    peer.dtls.state = "closed"
    with pytest.raises(StreamGone):
        stream.refresh_route()
    with pytest.raises(StreamGone):
        RtpStream(peer.sender, peer.parameters)


@pytest.mark.slow
def test_listeners_get_sender_reports_that_count_the_fast_paths_packets(
    node: NodeProcess, space: str
) -> None:
    async def scenario() -> None:
        speaker = Peer(node.url, space, tone_hz=440)
        listener = Peer(node.url, space)
        try:
            await speaker.join(node.token("u_speaker", space, "host"))
            await listener.join(node.token("u_listener", space))
            await asyncio.gather(speaker.connected(), listener.connected())
            await listener.hear(440, present=True)
            # The fast path sends a sender report every 5 s (at an offset of its own).
            sent = 0
            for _ in range(70):
                await asyncio.sleep(0.1)
                receiver = listener.pc.getReceivers()[0]
                for stats in (await receiver.getStats()).values():
                    if stats.type == "remote-outbound-rtp":
                        sent = stats.packetsSent
                if sent:
                    break
            assert sent > 10
        finally:
            await asyncio.gather(speaker.close(), listener.close())

    asyncio.run(scenario())


@pytest.mark.slow
@pytest.mark.parametrize("fanout", ["aiortc", "aiortc-encode"])
def test_the_benchmarks_baseline_paths_carry_the_same_audio(
    start_node: Callable[..., NodeProcess], fanout: str
) -> None:
    baseline = start_node(RTP_FANOUT=fanout)
    space = f"sp_{fanout.replace('-', '_')}"

    async def scenario() -> None:
        speaker = Peer(baseline.url, space, tone_hz=660)
        listener = Peer(baseline.url, space)
        try:
            await speaker.join(baseline.token("u_speaker", space, "host"))
            await listener.join(baseline.token("u_listener", space))
            await asyncio.gather(speaker.connected(), listener.connected())
            await listener.hear(660, present=True)
            await asyncio.sleep(0.5)
            assert abs(peak_hz(listener.recent(0.5)) - 660) <= 4
        finally:
            await asyncio.gather(speaker.close(), listener.close())

    try:
        asyncio.run(scenario())
    finally:
        baseline.stop()
