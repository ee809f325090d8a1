"""ICE consent freshness of fast-path streams (RFC 7675), in C: its crypto against the
standards' vectors, the tap's answers to the peer's checks, the node's own checks, and
expiry. Real WebRTC peers over loopback are in test_consent_peers.py."""

from __future__ import annotations

import asyncio
import hmac
import os
import socket
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aioice import stun
from aioice.candidate import candidate_priority

from media_node.transport import _fanout
from media_node.transport import aiortc_seams as seams
from media_node.transport.fanout import RtpStream, send_to_all, upkeep

from .fakes import LOCAL_PASSWORD, LOCAL_UFRAG, REMOTE_PASSWORD, REMOTE_UFRAG, TIE_BREAKER, FakePeer

# RFC 2202 section 3: HMAC-SHA1 test cases (key, data, digest).
RFC2202 = [
    (b"\x0b" * 20, b"Hi There", "b617318655057264e28bc0b6fb378c8ef146be00"),
    (b"Jefe", b"what do ya want for nothing?", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
    (b"\xaa" * 20, b"\xdd" * 50, "125d7342b9ac11cd91a39af48aa17b4f63f175d3"),
    (bytes(range(1, 26)), b"\xcd" * 50, "4c9007f4026250c6bc8414f9bf50c86c2d7235da"),
    (b"\x0c" * 20, b"Test With Truncation", "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04"),
    (
        b"\xaa" * 80,
        b"Test Using Larger Than Block-Size Key - Hash Key First",
        "aa4ae5e15272d00e95705637ce8a3b55ed402112",
    ),
    (
        b"\xaa" * 80,
        b"Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data",
        "e8e99d0f45237d786d6bbaa7965c7808bbff1a91",
    ),
]

# RFC 5769: the sample request (2.1) and responses (2.2, 2.3), short-term credentials.
RFC5769_PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"
RFC5769_REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae"
    "802200105354554e20746573742063 6c69656e74"
    "002400046e0001ff80290008932ff9b151263b36"
    "000600096576746a3a683676592020200008 0014"
    "9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"
    "80280004e57a3bcf".replace(" ", "")
)
RFC5769_IPV4_RESPONSE = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"
    "0020000800 01a147e112a643"
    "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7"
    "80280004c07d4c96".replace(" ", "")
)
RFC5769_IPV6_RESPONSE = bytes.fromhex(
    "010100482112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"
    "002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9"
    "00080014a382954e4be67bf11784c97c8292c275bfe3ed41"
    "80280004c8fb0b4c"
)


@pytest.mark.parametrize(("key", "data", "digest"), RFC2202)
def test_hmac_sha1_matches_rfc_2202(key: bytes, data: bytes, digest: str) -> None:
    assert _fanout.hmac_sha1(key, data).hex() == digest


def test_hmac_sha1_and_crc32_match_the_standard_library_at_every_block_boundary() -> None:
    assert _fanout.crc32(b"123456789") == 0xCBF43926  # the CRC-32 check value
    for size in (0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000):
        data = os.urandom(size)
        assert _fanout.crc32(data) == zlib.crc32(data)
        for key in (b"", b"k", os.urandom(64), os.urandom(65)):
            assert _fanout.hmac_sha1(key, data) == hmac.new(key, data, "sha1").digest()


@pytest.mark.parametrize(
    "message", [RFC5769_REQUEST, RFC5769_IPV4_RESPONSE, RFC5769_IPV6_RESPONSE]
)
def test_rfc_5769_messages_are_authentic_and_any_change_is_caught(message: bytes) -> None:
    assert _fanout.stun_authentic(message, RFC5769_PASSWORD)
    assert not _fanout.stun_authentic(message, RFC5769_PASSWORD[:-1])
    for at in (10, 30, len(message) - 30, len(message) - 1):
        damaged = bytearray(message)
        damaged[at] ^= 0x01
        assert not _fanout.stun_authentic(bytes(damaged), RFC5769_PASSWORD)


@pytest.fixture
def fast_consent() -> Iterator[None]:
    """Checks every 40-60 ms, consent lost after 0.4 s: the RFC's timers, scaled down."""
    previous = _fanout.consent_timing(interval=0.05, timeout=0.4)
    yield
    _fanout.consent_timing(*previous)


def check(
    username: str = f"{LOCAL_UFRAG}:{REMOTE_UFRAG}",
    password: str = LOCAL_PASSWORD,
    role: str = "ICE-CONTROLLING",
    **attributes: Any,
) -> bytes:
    """The peer's connectivity (consent) check, as aioice builds them."""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = username
    request.attributes["PRIORITY"] = 1853824767
    request.attributes[role] = 42
    request.attributes.update(attributes)
    request.add_message_integrity(password.encode())
    return bytes(request)


def receive_stun(peer: FakePeer) -> stun.Message:
    """The next STUN message the node sent the peer (sender reports are skipped)."""
    while True:
        data = peer.remote.recv(2048)
        if data[0] < 4:
            return stun.parse_message(data)


def test_the_peers_check_on_the_nominated_pair_is_answered_in_c(fake_peers: Any) -> None:
    peer = fake_peers(1)
    stream = RtpStream(peer.sender, peer.parameters)
    request = check(**{"USE-CANDIDATE": None})
    peer.protocol.datagram_received(request, peer.address)

    response = receive_stun(peer)
    assert peer.protocol.passed == []
    assert stream.native.consent_answers == 1
    assert response.message_class == stun.Class.RESPONSE
    assert response.transaction_id == request[8:20]
    assert response.attributes["XOR-MAPPED-ADDRESS"] == peer.address
    assert response.check_message_integrity(LOCAL_PASSWORD.encode())
    # parse_message checked the FINGERPRINT; it must be there.
    assert "FINGERPRINT" in response.attributes


def test_every_check_is_verified_and_answered_with_the_passwords_one_keyed_hmac(
    fake_peers: Any,
) -> None:
    # The stream keys HMAC-SHA1 once per password and starts it again for each message:
    # no message may inherit anything from the one before, good or bad.
    peer = fake_peers(1)
    stream = RtpStream(peer.sender, peer.parameters)
    for index in range(4):
        if index == 2:
            forged = check(password="not-the-password-at-all")
            peer.protocol.datagram_received(forged, peer.address)
            assert peer.protocol.passed == [forged]
        request = check()
        peer.protocol.datagram_received(request, peer.address)
        response = receive_stun(peer)
        assert response.transaction_id == request[8:20]
        assert response.check_message_integrity(LOCAL_PASSWORD.encode())
    assert stream.native.consent_answers == 4


def test_the_rfc_5769_sample_request_is_answered(fake_peers: Any) -> None:
    peer = fake_peers(1)
    peer.connection.local_username = "evtj"
    peer.connection.remote_username = "h6vY"
    peer.connection.local_password = RFC5769_PASSWORD.decode()
    # The sample carries ICE-CONTROLLED: its receiver controls.
    peer.connection.ice_controlling = True
    stream = RtpStream(peer.sender, peer.parameters)
    peer.protocol.datagram_received(RFC5769_REQUEST, peer.address)
    response = receive_stun(peer)
    assert peer.protocol.passed == []
    assert stream.native.consent_answers == 1
    assert response.transaction_id == bytes.fromhex("b7e7a701bc34d686fa87dfae")
    assert response.check_message_integrity(RFC5769_PASSWORD)
    assert _fanout.stun_authentic(bytes(response), RFC5769_PASSWORD)


@pytest.mark.parametrize(
    "why",
    ["wrong password", "wrong username", "role conflict", "another address", "no fingerprint"],
)
def test_what_the_tap_cannot_answer_goes_on_to_aioice(fake_peers: Any, why: str) -> None:
    peer = fake_peers(1)
    stream = RtpStream(peer.sender, peer.parameters)
    address = peer.address
    if why == "wrong password":
        request = check(password="not-the-password-at-all")
    elif why == "wrong username":
        request = check(username=f"{LOCAL_UFRAG}:someone")
    elif why == "role conflict":
        # The node is controlled here, and so claims the peer.
        request = check(role="ICE-CONTROLLED")
    elif why == "another address":
        # A check on another pair, which the peer may be about to nominate.
        request = check()
        address = (address[0], address[1] + 1)
    else:
        request = check()[:-8]
        request = request[:2] + (len(request) - 20).to_bytes(2, "big") + request[4:]
    peer.protocol.datagram_received(request, address)
    assert peer.protocol.passed == [request]
    assert stream.native.consent_answers == 0


def test_the_nodes_checks_are_aiocies_own_format_and_an_answer_grants_consent(
    fake_peers: Any, fast_consent: None
) -> None:
    peer = fake_peers(1)
    stream = RtpStream(peer.sender, peer.parameters)
    native = stream.native
    deadline = time.monotonic() + 1
    while native.consent_checks == 0:
        assert time.monotonic() < deadline
        upkeep([native], 0)
        time.sleep(0.005)
    request = receive_stun(peer)
    assert request.message_method == stun.Method.BINDING
    assert request.message_class == stun.Class.REQUEST
    assert request.attributes["USERNAME"] == f"{REMOTE_UFRAG}:{LOCAL_UFRAG}"
    assert request.attributes["ICE-CONTROLLED"] == TIE_BREAKER
    assert request.attributes["PRIORITY"] == candidate_priority(1, "prflx")
    assert "USE-CANDIDATE" not in request.attributes
    assert request.check_message_integrity(REMOTE_PASSWORD.encode())

    def answer(password: str = REMOTE_PASSWORD, transaction: bytes | None = None) -> bytes:
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=transaction or request.transaction_id,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = peer.local.getsockname()
        response.add_message_integrity(password.encode())
        return bytes(response)

    # A forged answer is dropped: it grants nothing, and aioice never sees it.
    forged = answer(password="someone-elses-password")
    peer.protocol.datagram_received(forged, peer.address)
    assert native.consent_responses == 0
    # An answer to a transaction of aioice's own goes on to aioice.
    foreign = answer(transaction=os.urandom(12))
    peer.protocol.datagram_received(foreign, peer.address)
    assert peer.protocol.passed == [foreign]

    time.sleep(0.1)
    assert native.consent_age is not None
    assert native.consent_age >= 0.1
    peer.protocol.datagram_received(answer(), peer.address)
    assert native.consent_responses == 1
    assert native.consent_age < 0.05
    # A replay of the same answer counts once.
    peer.protocol.datagram_received(answer(), peer.address)
    assert native.consent_responses == 1


def test_checks_come_every_0_8_to_1_2_intervals(fake_peers: Any, fast_consent: None) -> None:
    peer = fake_peers(1)
    native = RtpStream(peer.sender, peer.parameters).native
    sent: list[float] = []
    start = time.monotonic()
    while time.monotonic() - start < 0.38:
        before = native.consent_checks
        upkeep([native], 0)
        if native.consent_checks > before:
            sent.append(time.monotonic())
        time.sleep(0.001)
    gaps = [b - a for a, b in zip([start, *sent], sent, strict=False)]
    assert len(gaps) >= 5
    # 40-60 ms, give or take the loop's own millisecond.
    assert all(0.039 <= gap <= 0.065 for gap in gaps), gaps


def test_a_peer_that_stops_answering_loses_consent_and_gets_nothing_more(
    fake_peers: Any, fast_consent: None
) -> None:
    peer, other = fake_peers(1), fake_peers(2)
    streams = [RtpStream(p.sender, p.parameters).native for p in (peer, other)]
    lost: list[Any] = []
    start = time.monotonic()
    while not lost:
        assert time.monotonic() - start < 1
        lost = upkeep(streams, 0)
        # The other peer answers every check.
        other.remote.settimeout(0)
        try:
            data = other.remote.recv(2048)
        except BlockingIOError:
            data = b""
        if data and data[0] < 4:
            request = stun.parse_message(data)
            response = stun.Message(
                message_method=stun.Method.BINDING,
                message_class=stun.Class.RESPONSE,
                transaction_id=request.transaction_id,
            )
            response.attributes["XOR-MAPPED-ADDRESS"] = other.local.getsockname()
            response.add_message_integrity(REMOTE_PASSWORD.encode())
            other.protocol.datagram_received(bytes(response), other.address)
        time.sleep(0.005)
    elapsed = time.monotonic() - start
    assert lost == [streams[0]]
    assert 0.4 <= elapsed < 0.5
    assert streams[0].consent_expired
    assert not streams[0].routed
    assert not streams[1].consent_expired
    assert streams[1].consent_responses >= 5
    # Not one more packet; reported once.
    assert send_to_all(streams, b"opus", 960) == 1
    assert streams[0].dropped == 1
    assert upkeep(streams, 0) == []


def test_an_authenticated_403_revokes_consent_at_once(
    fake_peers: Any, fast_consent: None
) -> None:
    peer = fake_peers(1)
    native = RtpStream(peer.sender, peer.parameters).native
    while native.consent_checks == 0:
        upkeep([native], 0)
        time.sleep(0.005)
    request = receive_stun(peer)
    refusal = stun.Message(
        message_method=stun.Method.BINDING,
        message_class=stun.Class.ERROR,
        transaction_id=request.transaction_id,
    )
    refusal.attributes["ERROR-CODE"] = (403, "Forbidden")
    refusal.add_message_integrity(REMOTE_PASSWORD.encode())
    peer.protocol.datagram_received(bytes(refusal), peer.address)
    assert upkeep([native], 0) == [native]
    assert native.consent_expired


def test_the_stream_takes_consent_over_from_aioice(fake_peers: Any) -> None:
    peer = fake_peers(1)

    async def scenario() -> asyncio.Task[None]:
        aioice_consent = asyncio.create_task(asyncio.sleep(3600))
        peer.connection._query_consent_task = aioice_consent
        RtpStream(peer.sender, peer.parameters)
        assert seams.consent_task(peer.connection) is None
        await asyncio.sleep(0)
        return aioice_consent

    assert asyncio.run(scenario()).cancelled()


def test_closing_the_stream_gives_the_socket_back_to_aioice(fake_peers: Any) -> None:
    peer = fake_peers(1)
    stream = RtpStream(peer.sender, peer.parameters)
    stream.close()
    request = check()
    peer.protocol.datagram_received(request, peer.address)
    assert peer.protocol.passed == [request]
    assert "datagram_received" not in vars(peer.protocol)


def test_a_tap_survives_garbage_collection_cycles(fake_peers: Callable[..., FakePeer]) -> None:
    # protocol -> tap -> bound method -> protocol: collectable once nothing else holds it.
    import gc
    import weakref

    peer = fake_peers(1)
    stream = RtpStream(peer.sender, peer.parameters)
    protocol = peer.protocol
    gone = weakref.ref(protocol)
    del stream
    peer.protocol = None  # type: ignore[assignment]
    peer.connection._protocols = []
    peer.connection._nominated = {}
    del protocol
    gc.collect()
    assert gone() is None


def test_an_ipv6_peer_gets_its_address_back(fake_peers: Any) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    peer = fake_peers(1)
    stream = RtpStream(peer.sender, peer.parameters)
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as local, socket.socket(
        socket.AF_INET6, socket.SOCK_DGRAM
    ) as remote:
        try:
            local.bind(("::1", 0))
            remote.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback")
        remote.settimeout(2)
        address = remote.getsockname()[:2]
        stream.native.route(address[0], address[1], fd=local.fileno())
        tap = _fanout.Tap(stream.native, peer.protocol.passed.append, local.fileno())
        request = check()
        tap(request, (*address, 0, 0))
        response = stun.parse_message(remote.recv(2048))
    assert response.attributes["XOR-MAPPED-ADDRESS"] == address
    assert response.check_message_integrity(LOCAL_PASSWORD.encode())
