"""A fake aiortc peer connection for the fast path's unit tests: real sockets, real SRTP,
real ICE credentials, and only the aiortc and aioice attributes that RtpStream reads."""

from __future__ import annotations

import os
import socket
from types import SimpleNamespace
from typing import Any

from aiortc import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)
from aiortc.rtcdtlstransport import SRTP_PROFILES, State
from aiortc.rtcrtpparameters import RTCRtcpParameters, RTCRtpSendParameters
from aiortc.rtp import HeaderExtensionsMap, RtcpPacket, RtpPacket
from pylibsrtp import Policy, Session

from media_node.transport.fanout import MID_URI

MID_ID = 9
PROFILES = {
    "SRTP_AES128_CM_SHA1_80": (Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),
    "SRTP_AEAD_AES_128_GCM": (Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 28),
    "SRTP_AEAD_AES_256_GCM": (Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 44),
}
# The node's ICE credentials and the peer's, as each side's SDP would carry them.
LOCAL_UFRAG = "nOdE"
LOCAL_PASSWORD = "node-password-0123456789"
REMOTE_UFRAG = "pEeR"
REMOTE_PASSWORD = "peer-password-9876543210"
TIE_BREAKER = 0x1122334455667788


def srtp(key: bytes, direction: int, profile: str = "SRTP_AEAD_AES_256_GCM") -> Session:
    """A session as aiortc's DTLS transport makes them."""
    policy = Policy(key=key, ssrc_type=direction, srtp_profile=PROFILES[profile][0])
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return Session(policy)


class FakeSsl:
    """The DTLS session as RtpStream reads it: the profile the handshake selected and
    the keying material exported from it (random here, the same for both sides)."""

    def __init__(self, profile: str, material: bytes) -> None:
        self.profile = profile.encode()
        self.material = material

    def get_selected_srtp_profile(self) -> bytes:
        return self.profile

    def export_keying_material(self, label: bytes, length: int) -> bytes:
        assert label == b"EXTRACTOR-dtls_srtp"
        assert length == len(self.material)
        return self.material


class FakeProtocol:
    """An aioice StunProtocol as far as the stream and its tap see it."""

    def __init__(self, sock: socket.socket) -> None:
        self.passed: list[bytes] = []
        self.transport = SimpleNamespace(get_extra_info=lambda name: sock)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.passed.append(data)


class FakePeer:
    """What RtpStream reads from aiortc, over real sockets and real SRTP.

    The node's side: a DTLS transport with its two SRTP sessions, an ICE connection
    with its credentials and a nominated pair. The peer's side: `remote`, a socket that
    receives, and the sessions a browser would have derived from the same handshake.
    """

    def __init__(self, ssrc: int, profile: str = "SRTP_AEAD_AES_256_GCM") -> None:
        # As a handshake would: keying material for both directions, the node (the DTLS
        # server here) sending with the second half's keys, as RFC 5764 4.2 lays it out.
        (srtp_profile,) = (p for p in SRTP_PROFILES if p.openssl_profile == profile.encode())
        material = os.urandom(2 * PROFILES[profile][1])
        node_key = srtp_profile.get_key_and_salt(material, 1)
        peer_key = srtp_profile.get_key_and_salt(material, 0)
        self.local = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.local.bind(("127.0.0.1", 0))
        self.remote = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.remote.bind(("127.0.0.1", 0))
        self.remote.settimeout(2)
        self.protocol = FakeProtocol(self.local)
        pair = SimpleNamespace(protocol=self.protocol, remote_addr=self.remote.getsockname())
        self.connection = SimpleNamespace(
            _nominated={1: pair},
            _protocols=[self.protocol],
            local_username=LOCAL_UFRAG,
            local_password=LOCAL_PASSWORD,
            remote_username=REMOTE_UFRAG,
            remote_password=REMOTE_PASSWORD,
            ice_controlling=False,
            _tie_breaker=TIE_BREAKER,
            _query_consent_task=None,
        )
        self.dtls = SimpleNamespace(
            _state=State.CONNECTED,
            state="connected",
            _tx_srtp=srtp(node_key, Policy.SSRC_ANY_OUTBOUND, profile),
            _rx_srtp=srtp(peer_key, Policy.SSRC_ANY_INBOUND, profile),
            _ssl=FakeSsl(profile, material),
            _srtp_profiles=SRTP_PROFILES,
            _role="server",
            transport=SimpleNamespace(_connection=self.connection),
        )
        self.sender: Any = SimpleNamespace(_ssrc=ssrc, transport=self.dtls)
        self.parameters = RTCRtpSendParameters(
            codecs=[RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, payloadType=111)],
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=MID_ID, uri=MID_URI)],
            muxId="0",
            rtcp=RTCRtcpParameters(cname="node-cname"),
        )
        self.inbound = srtp(node_key, Policy.SSRC_ANY_INBOUND, profile)
        self.outbound = srtp(peer_key, Policy.SSRC_ANY_OUTBOUND, profile)

    @property
    def address(self) -> tuple[str, int]:
        """The peer's address, whence its datagrams come."""
        host, port = self.remote.getsockname()
        return (host, port)

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

    def report(self, *packets: Any) -> bytes:
        """An SRTCP compound packet from the peer."""
        return self.outbound.protect_rtcp(b"".join(bytes(p) for p in packets))

    def close(self) -> None:
        self.local.close()
        self.remote.close()
