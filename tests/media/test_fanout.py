"""The fast fan-out path: what it puts on the wire, and that peers hear through it."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiortc.clock import current_ntp_time
from aiortc.rtcdtlstransport import State
from aiortc.rtp import (
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    RtpPacket,
)

from media_node.transport import _fanout, srtp_gcm
from media_node.transport import aiortc_seams as seams
from media_node.transport.fanout import RtpStream, StreamGone, send_to_all
from peer.tones import peak_hz

from .conftest import NodeProcess
from .fakes import PROFILES, FakePeer
from .peers import Peer


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_each_stream_gets_its_own_header_and_keys_and_a_dead_one_is_skipped(
    fake_peers: Callable[..., FakePeer], profile: str
) -> None:
    first, gone, last = fake_peers(1111, profile), fake_peers(2222, profile), fake_peers(3333)
    streams = [RtpStream(peer.sender, peer.parameters) for peer in (first, gone, last)]
    streams[1].close()
    natives = [stream.native for stream in streams]

    for pts in (0, 960):
        assert send_to_all(natives, b"opus-payload", pts) == 2

    for peer, stream in ((first, streams[0]), (last, streams[2])):
        packets = [peer.receive(), peer.receive()]
        assert [p.ssrc for p in packets] == [peer.sender._ssrc] * 2
        assert [p.payload_type for p in packets] == [111, 111]
        assert [p.payload for p in packets] == [b"opus-payload"] * 2
        assert packets[1].sequence_number == (packets[0].sequence_number + 1) & 0xFFFF
        assert packets[0].timestamp == stream.native.timestamp_origin
        assert packets[1].timestamp == (stream.native.timestamp_origin + 960) & 0xFFFFFFFF
        assert packets[0].extensions.mid == "0"
        assert stream.native.sent == 2
        assert stream.native.octets == 2 * len(b"opus-payload")
    assert natives[1].dropped == 2
    assert natives[1].sent == 0

    streams[0].send_report(ntp_time=123456789, pts=960)
    report, description = first.receive_rtcp()
    assert isinstance(report, RtcpSrPacket)
    assert report.ssrc == 1111
    assert report.sender_info.packet_count == 2
    assert report.sender_info.octet_count == 2 * len(b"opus-payload")
    assert report.sender_info.ntp_timestamp == 123456789
    assert report.sender_info.rtp_timestamp == (natives[0].timestamp_origin + 960) & 0xFFFFFFFF
    assert isinstance(description, RtcpSdesPacket)
    assert description.chunks[0].items == [(1, b"node-cname")]


@pytest.mark.parametrize("protection", ["libsrtp", "own-gcm"])
def test_sequence_numbers_wrap_and_srtp_follows_the_rollover(
    fake_peers: Callable[..., FakePeer], protection: str
) -> None:
    peer = fake_peers(4242)
    session = peer.dtls._tx_srtp
    stream = _fanout.Stream(
        owner=session,
        session=seams.srtp_context(session),
        ssrc=4242,
        sequence=65534,
        timestamp_origin=0xFFFFFC40,
    )
    if protection == "own-gcm":
        keys = srtp_gcm.outbound_keys(peer.dtls)
        assert keys is not None
        stream.use_gcm(*keys)
    stream.configure(payload_type=111, extension=b"", cname=b"")
    stream.route(*peer.remote.getsockname(), fd=peer.local.fileno())
    for index in range(4):
        assert send_to_all([stream], bytes([index]) * 40, index * 960) == 1
    # The receiver's libsrtp decrypts past the wrap only if the sender's rollover
    # counter went up with it.
    packets = [peer.receive() for _ in range(4)]
    assert [p.sequence_number for p in packets] == [65534, 65535, 0, 1]
    assert [p.timestamp for p in packets] == [0xFFFFFC40, 0, 960, 1920]
    assert [p.payload for p in packets] == [bytes([i]) * 40 for i in range(4)]
    assert stream.sequence == 2
    assert stream.rollover == 1


@pytest.mark.parametrize("profile", ["SRTP_AEAD_AES_128_GCM", "SRTP_AEAD_AES_256_GCM"])
def test_aes_gcm_rtp_is_protected_by_the_stream_byte_for_byte_as_libsrtp_would(
    fake_peers: Callable[..., FakePeer], profile: str
) -> None:
    """With an AEAD profile the C stream protects RTP itself (its own OpenSSL context,
    keyed from the DTLS session): every byte on the wire, tag included, is what the
    transport's own libsrtp session makes of the same packet, whatever the payload's
    length against AES's 16-byte blocks."""
    peer = fake_peers(5151, profile)
    stream = RtpStream(peer.sender, peer.parameters)
    keys = srtp_gcm.outbound_keys(peer.dtls)
    assert keys is not None
    # Keyed by RtpStream already: the packets below are the stream's, not libsrtp's.
    with pytest.raises(RuntimeError, match="keyed already"):
        stream.native.use_gcm(*keys)
    sizes = (0, 1, 15, 16, 17, 80, 127, 128, 129, 143, 300, 1275)
    payloads = [os.urandom(size) for size in sizes]
    for index, payload in enumerate(payloads):
        assert send_to_all([stream.native], payload, index * 960) == 1
    for payload in payloads:
        wire = peer.remote.recv(2048)
        header_size = len(wire) - len(payload) - 16
        plain = wire[:header_size] + payload
        assert wire == peer.dtls._tx_srtp.protect(plain)
    assert stream.native.sent == len(sizes)


def test_receiver_reports_are_taken_off_the_socket_and_the_rest_passes(
    fake_peers: Callable[..., FakePeer],
) -> None:
    peer = fake_peers(5555)
    stream = RtpStream(peer.sender, peer.parameters)
    protocol = peer.protocol
    address = peer.remote.getsockname()
    native = stream.native

    ntp = current_ntp_time()
    stream.send_report(ntp_time=ntp, pts=0)
    peer.receive_rtcp()
    echoed = (ntp >> 16) & 0xFFFFFFFF
    block = RtcpReceiverInfo(
        ssrc=5555,
        fraction_lost=64,
        packets_lost=12,
        highest_sequence=1000,
        jitter=480,
        lsr=echoed,
        dlsr=0,
    )
    receiver_report = RtcpRrPacket(ssrc=777, reports=[block])
    description = RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=777, items=[(1, b"peer")])])
    protocol.datagram_received(peer.report(receiver_report, description), address)
    assert protocol.passed == []
    assert native.receiver_reports == 1
    assert native.fraction_lost == 0.25
    assert native.packets_lost == 12
    assert native.jitter == 480
    assert native.round_trip_time is not None
    assert 0 <= native.round_trip_time < 1.0

    # A publishing peer's compound packet starts with its sender report: aiortc's
    # receiver needs it, so it goes on (still protected) to aioice and aiortc.
    sender_report = RtcpSrPacket(
        ssrc=777,
        sender_info=RtcpSenderInfo(
            ntp_timestamp=ntp, rtp_timestamp=0, packet_count=1, octet_count=1
        ),
        reports=[block],
    )
    published = peer.report(sender_report, description)
    protocol.datagram_received(published, address)
    stun = b"\x00\x01\x00\x00" + os.urandom(16)
    protocol.datagram_received(stun, address)
    # A forged receiver report is dropped, as aiortc would drop it.
    forged = bytearray(peer.report(receiver_report))
    forged[12] ^= 0xFF
    protocol.datagram_received(bytes(forged), address)
    assert protocol.passed == [published, stun]
    assert native.receiver_reports == 1

    stream.close()
    protocol.datagram_received(peer.report(receiver_report), address)
    assert len(protocol.passed) == 3


def test_a_stream_is_refused_or_stopped_once_dtls_is_not_connected(
    fake_peers: Callable[..., FakePeer],
) -> None:
    peer = fake_peers(4444)
    stream = RtpStream(peer.sender, peer.parameters)
    peer.dtls._state = State.CLOSED
    peer.dtls.state = "closed"
    with pytest.raises(StreamGone):
        stream.refresh_route()
    with pytest.raises(StreamGone):
        RtpStream(peer.sender, peer.parameters)


def test_a_stream_that_cannot_send_misses_only_its_own_packets(
    fake_peers: Callable[..., FakePeer],
) -> None:
    # A send that fails (a full buffer's EAGAIN, an unreachable network, a socket of
    # the wrong family as here) costs that stream its packet and nobody else theirs.
    first, broken, last = fake_peers(1), fake_peers(2), fake_peers(3)
    streams = [RtpStream(peer.sender, peer.parameters).native for peer in (first, broken, last)]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unix:
        streams[1].route(*broken.remote.getsockname(), fd=unix.fileno())
    for pts in range(0, 960 * 5, 960):
        assert send_to_all(streams, b"x" * 60, pts) == 2
    assert [s.sent for s in streams] == [5, 0, 5]
    assert streams[1].dropped == 5
    assert [first.receive().payload for _ in range(5)] == [b"x" * 60] * 5
    assert [last.receive().payload for _ in range(5)] == [b"x" * 60] * 5


def test_streams_on_one_socket_go_out_in_one_system_call(
    fake_peers: Callable[..., FakePeer],
) -> None:
    # As on a worker's ICE mux: every stream routed through one socket (each holding a
    # duplicate of it). A room hands C a tuple, which is sent in batches per socket.
    peers = [fake_peers(100 + i) for i in range(4)]
    streams = [RtpStream(peer.sender, peer.parameters).native for peer in peers]
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as shared,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other,
    ):
        shared.bind(("127.0.0.1", 0))
        other.bind(("127.0.0.1", 0))
        for stream, peer in zip(streams[:3], peers[:3], strict=True):
            stream.route(*peer.remote.getsockname(), fd=shared.fileno())
        streams[3].route(*peers[3].remote.getsockname(), fd=other.fileno())

        before = _fanout.send_calls()
        assert send_to_all(tuple(streams), b"batched", 0) == 4
        # The three on `shared` in one sendmmsg, the one on `other` in another.
        assert _fanout.send_calls() - before == 2
        before = _fanout.send_calls()
        assert send_to_all(streams, b"one by one", 960) == 4
        assert _fanout.send_calls() - before == 4

    for peer in peers:
        assert [peer.receive().payload for _ in range(2)] == [b"batched", b"one by one"]
    assert [s.sent for s in streams] == [2] * 4


def record_rtp(peer: Peer) -> list[tuple[float, int, int, int]]:
    """(arrival, SSRC, sequence number, timestamp) of every RTP packet the peer's aiortc
    decrypted and parsed: a packet the node protected wrongly never gets here."""
    received: list[tuple[float, int, int, int]] = []
    receiver: Any = peer.pc.getTransceivers()[0].receiver
    original = seams.packet_handler(receiver)

    async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        received.append((time.monotonic(), packet.ssrc, packet.sequence_number, packet.timestamp))
        await original(packet, arrival_time_ms)

    seams.replace_packet_handler(receiver, handle)
    return received


def assert_continuous(received: list[tuple[float, int, int, int]]) -> None:
    assert len({ssrc for _, ssrc, _, _ in received}) == 1
    for (_, _, sequence, timestamp), (_, _, following, later) in itertools.pairwise(received):
        assert following == (sequence + 1) & 0xFFFF, (sequence, following)
        assert later == (timestamp + 960) & 0xFFFFFFFF, (timestamp, later)


@pytest.mark.slow
def test_rtp_stays_continuous_across_a_renegotiation(node: NodeProcess, space: str) -> None:
    async def scenario() -> None:
        promoted = Peer(node.url, space)
        try:
            await promoted.join(node.token("u_promoted", space))
            received = record_rtp(promoted)
            await promoted.connected()
            await asyncio.sleep(0.5)
            await asyncio.to_thread(node.member, space, "u_promoted", "speaker")
            await promoted.wait_told("role_changed", user_id="u_promoted", role="speaker")
            before = len(received)

            assert await promoted.publish(550) == 200
            await asyncio.sleep(1.0)
            # The listener's mix, then its own mix-minus after the PATCH: one stream,
            # one SSRC, every sequence number and timestamp in order, none repeated.
            assert before > 10
            assert len(received) > before + 40
            assert_continuous(received)
        finally:
            await promoted.close()

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_stalled_listener_costs_the_others_nothing(node: NodeProcess, space: str) -> None:
    async def scenario() -> None:
        speaker = Peer(node.url, space, tone_hz=440)
        stalled = Peer(node.url, space)
        steady = Peer(node.url, space)
        try:
            await speaker.join(node.token("u_speaker", space, "host"))
            await stalled.join(node.token("u_stalled", space))
            await steady.join(node.token("u_steady", space))
            received = record_rtp(steady)
            await asyncio.gather(speaker.connected(), stalled.connected(), steady.connected())
            # The stalled listener stops reading its socket: its kernel buffer fills
            # and the node's sends to it fail or are dropped.
            connection: Any = stalled.pc.getTransceivers()[0].receiver.transport.transport
            for protocol in connection._connection._protocols:
                protocol.transport.pause_reading()
            start = len(received)
            began = time.monotonic()
            await asyncio.sleep(3.0)
            window = received[start:]
            seconds = time.monotonic() - began
            assert_continuous(window)
            assert len(window) >= 0.9 * seconds * 50
            gaps = [b[0] - a[0] for a, b in itertools.pairwise(window)]
            assert max(gaps) < 0.2
            await steady.hear(440, present=True)
        finally:
            await asyncio.gather(speaker.close(), stalled.close(), steady.close())

    asyncio.run(scenario())


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
            # The fast path sends a sender report every 5 s, the first at a random
            # offset of up to 5 s: one that came before 10 packets were sent is followed
            # by the next within 5 s more.
            sent = 0
            for _ in range(120):
                await asyncio.sleep(0.1)
                receiver = listener.pc.getReceivers()[0]
                for stats in (await receiver.getStats()).values():
                    if stats.type == "remote-outbound-rtp":
                        sent = stats.packetsSent
                if sent > 10:
                    break
            assert sent > 10
        finally:
            await asyncio.gather(speaker.close(), listener.close())

    asyncio.run(scenario())


@pytest.mark.slow
def test_the_node_reads_its_listeners_receiver_reports(
    start_node: Callable[..., NodeProcess],
) -> None:
    reporting = start_node()
    space = "sp_reports"

    async def scenario() -> None:
        speaker = Peer(reporting.url, space, tone_hz=440)
        listener = Peer(reporting.url, space)
        try:
            await speaker.join(reporting.token("u_speaker", space, "host"))
            await listener.join(reporting.token("u_listener", space))
            await asyncio.gather(speaker.connected(), listener.connected())
            # aiortc's receiver reports every 0.5-1.5 s; metrics come every second.
            await asyncio.sleep(4)
        finally:
            await asyncio.gather(speaker.close(), listener.close())

    try:
        asyncio.run(scenario())
    finally:
        reporting.stop()
    metrics = [line for line in reporting.log_lines() if "_aws" in line]
    assert sum(line["ReceiverReports"] for line in metrics) >= 2
    assert max(line["OutboundLossPercent"] for line in metrics) < 5


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
