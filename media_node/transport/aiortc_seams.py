"""Every place the node reaches into aiortc, aioice or pylibsrtp past their public API.

The fast path needs what those libraries keep to themselves: the SRTP sessions aiortc
keyed from the DTLS handshake, the nominated ICE pair and its socket, consent freshness,
the receiver's packet handler, the certificate a peer connection is made with. Each is
one function here, with one test in tests/media/test_seams.py against real peer
connections; nothing else in the node (or its tests) touches those libraries' private
names. At import the installed versions are checked against the ones these seams were
written for: an upgrade means reading this file and running its tests, not searching
the node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any, ClassVar

import aiortc.rtcpeerconnection
from aioice import Connection
from aioice.ice import CandidatePair, StunProtocol
from aiortc import RTCDtlsTransport, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsFingerprint, SRTPProtectionProfile
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters, RTCRtpSendParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RtpPacket
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL
from pylibsrtp import Session
from pylibsrtp._binding import ffi, lib

WRITTEN_FOR = {"aiortc": "1.16.0", "aioice": "0.13.0", "pylibsrtp": "1.0.0"}
for _package, _expected in WRITTEN_FOR.items():
    if version(_package) != _expected:  # pragma: no cover - a mismatched install
        raise ImportError(
            f"{_package} {version(_package)} is installed; the node's seams into it "
            f"(media_node/transport/aiortc_seams.py) were written for {_expected}: read "
            "them against the new version and run tests/media/test_seams.py")

# With RTP/RTCP multiplexing, ICE has one component.
COMPONENT = 1


# -- pylibsrtp: the libsrtp functions and sessions the C stream calls ------------------

# The C side calls pylibsrtp's libsrtp through this signature (libsrtp 2.x); a pylibsrtp
# built on another libsrtp must fail here, at import, rather than corrupt memory later.
SRTP_SIGNATURE = "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)"
SRTP_FUNCTIONS = ("srtp_protect", "srtp_protect_rtcp", "srtp_unprotect_rtcp")


def srtp_function_addresses() -> tuple[int, ...]:
    """The addresses of libsrtp's protect, protect RTCP and unprotect RTCP."""
    for name in SRTP_FUNCTIONS:
        function = getattr(lib, name)
        if ffi.getctype(ffi.typeof(function)) != SRTP_SIGNATURE:  # pragma: no cover
            raise ImportError(f"pylibsrtp's {name} is {ffi.typeof(function)}")
    return tuple(int(ffi.cast("uintptr_t", ffi.addressof(lib, name))) for name in SRTP_FUNCTIONS)


def srtp_context(session: Session) -> int:
    """The address of a pylibsrtp session's libsrtp context (srtp_t)."""
    return int(ffi.cast("uintptr_t", session._srtp[0]))


# -- aiortc: DTLS and SRTP ---------------------------------------------------------------


def srtp_sessions(dtls: RTCDtlsTransport) -> tuple[Session | None, Session | None]:
    """The (outbound, inbound) SRTP sessions aiortc keyed from the handshake."""
    return dtls._tx_srtp, dtls._rx_srtp


def dtls_connected(dtls: RTCDtlsTransport) -> bool:
    """The handshake is done (a cheaper test than the `state` property's string)."""
    return dtls._state is DtlsState.CONNECTED


def srtp_keying(dtls: RTCDtlsTransport) -> tuple[SSL.Connection | None,
                                                  list[SRTPProtectionProfile], bool]:
    """What aiortc keyed SRTP from: its OpenSSL connection (None before a handshake),
    the profiles it offered, and whether it is the DTLS server."""
    return dtls._ssl, list(dtls._srtp_profiles), dtls._role == "server"


def ice_connection(dtls: RTCDtlsTransport) -> Connection:
    """The aioice connection under a DTLS transport."""
    return dtls.transport._connection


def sender_ssrc(sender: RTCRtpSender) -> int:
    return int(sender._ssrc)


def take_over_sending(sender: RTCRtpSender,
                      started: Callable[[RTCRtpSendParameters], None]) -> None:
    """Keep aiortc from starting `sender`'s RTP and RTCP loops; call `started` when it
    would have (aiortc calls `send(parameters)` once DTLS is up, and again after each
    renegotiation). The peer's RTCP about this SSRC still reaches the sender."""

    async def send(parameters: RTCRtpSendParameters) -> None:
        sender.transport._register_rtp_sender(sender, parameters)
        started(parameters)

    sender.send = send  # type: ignore[method-assign]


RtpHandler = Callable[[RtpPacket, int], Awaitable[None]]


def take_over_receiving(receiver: RTCRtpReceiver,
                        receive: Callable[[RTCRtpReceiveParameters], None],
                        handle: Callable[[RtpPacket, StreamStatistics | None], None],
                        clock_rate: int) -> None:
    """Keep `receiver` registered and its RTCP running, but hand each RTP packet to
    `handle` instead of aiortc's jitter buffer and decoder thread. `receive` sees the
    negotiated parameters (again after each renegotiation); `handle` gets each packet
    with its stream's statistics (which aiortc's RTCP reports read), or None while the
    receiver is disabled."""
    state = vars(receiver)
    streams: dict[int, StreamStatistics] = state["_RTCRtpReceiver__remote_streams"]

    async def start(parameters: RTCRtpReceiveParameters) -> None:
        receive(parameters)
        receiver.transport._register_rtp_receiver(receiver, parameters)
        if not state["_RTCRtpReceiver__started"]:
            # Marked started, so that aiortc's stop() unregisters it and ends this task.
            state["_RTCRtpReceiver__rtcp_task"] = asyncio.ensure_future(receiver._run_rtcp())
            state["_RTCRtpReceiver__started"] = True

    async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
        if not receiver._enabled:
            handle(packet, None)
            return
        stream = streams.get(packet.ssrc)
        if stream is None:
            stream = streams[packet.ssrc] = StreamStatistics(clock_rate)
        handle(packet, stream)

    receiver.receive = start  # type: ignore[method-assign]
    receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]


def packet_handler(receiver: RTCRtpReceiver) -> RtpHandler:
    """The receiver's RTP handler now (tests wrap it to watch what arrives)."""
    handler: RtpHandler = receiver._handle_rtp_packet
    return handler


def replace_packet_handler(receiver: RTCRtpReceiver, handler: RtpHandler) -> None:
    receiver._handle_rtp_packet = handler  # type: ignore[method-assign, assignment]


SendRtp = Callable[[bytes], Awaitable[None]]


def rtp_output(dtls: RTCDtlsTransport) -> SendRtp:
    """The coroutine aiortc's senders hand each serialized RTP packet to."""
    send: SendRtp = dtls._send_rtp
    return send


def replace_rtp_output(dtls: RTCDtlsTransport, send: SendRtp) -> None:
    dtls._send_rtp = send  # type: ignore[method-assign, assignment]


def ice_transports(pc: RTCPeerConnection) -> list[Any]:
    """The peer connection's ICE transports (one, bundled, once an offer is applied)."""
    return list(pc._RTCPeerConnection__iceTransports)  # type: ignore[attr-defined]


def gatherer_connection(ice_transport: Any) -> Connection:
    """The aioice connection an ICE transport gathers its candidates with."""
    return ice_transport.iceGatherer._connection


# -- aioice: the nominated pair, consent freshness, the connection's sockets ------------


def nominated_pair(connection: Connection) -> CandidatePair | None:
    return connection._nominated.get(COMPONENT)


def nominated_pairs(protocol: StunProtocol) -> list[CandidatePair]:
    """The nominated pairs of the connection that `protocol` belongs to."""
    return list(getattr(protocol.receiver, "_nominated", {}).values())


def tie_breaker(connection: Connection) -> int:
    return int(connection._tie_breaker)


def consent_task(connection: Connection) -> asyncio.Task[None] | None:
    task: asyncio.Task[None] | None = connection._query_consent_task
    return task


def stop_consent(connection: Connection) -> None:
    """Stop aioice's consent freshness task; it is a task of its own, cancelled as
    close() cancels it, and nothing else of the connection depends on it."""
    task = connection._query_consent_task
    if task is not None:
        task.cancel()
        connection._query_consent_task = None


def protocols(connection: Connection) -> list[StunProtocol]:
    """The connection's sockets (aioice's protocols), the mux's among them."""
    found: list[StunProtocol] = connection._protocols
    return found


def add_protocol(connection: Connection, protocol: StunProtocol) -> None:
    connection._protocols.append(protocol)


Gather = Callable[..., Awaitable[list[Any]]]


def replace_gatherer(connection: Connection, gather: Gather) -> None:
    """Have the connection gather its candidates with `gather`, once: a connection
    whose gatherer was replaced already keeps it."""
    if "get_component_candidates" not in vars(connection):
        connection.get_component_candidates = gather  # type: ignore[method-assign, assignment]


def tap_datagrams(protocol: StunProtocol, tap: Callable[[bytes, Any], None]) -> None:
    """Datagrams the protocol's socket receives go to `tap` first (an instance attribute
    shadows the class's method, for this protocol only)."""
    protocol.datagram_received = tap  # type: ignore[method-assign, assignment]


def untap(protocol: StunProtocol) -> None:
    vars(protocol).pop("datagram_received", None)


# -- aiortc: one certificate per worker ---------------------------------------------------

# A certificate is made again a day before it would expire (aiortc's are valid 30 days).
RENEW_BEFORE_EXPIRY_SECONDS = 24 * 3600


class WorkerCertificate(RTCCertificate):
    """One DTLS certificate for every peer connection of a worker, its fingerprints
    computed once and one OpenSSL context per profile list (aiortc makes a key pair,
    three fingerprints and a context per peer: about 8% of a join storm's CPU)."""

    _current: ClassVar[WorkerCertificate | None] = None
    _renew_at: ClassVar[float] = 0.0

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        super().__init__(key, cert)
        self._fingerprints: list[RTCDtlsFingerprint] | None = None
        self._contexts: dict[tuple[bytes, ...], SSL.Context] = {}

    @classmethod
    def generateCertificate(cls) -> WorkerCertificate:  # noqa: N802 - aiortc's name
        current = cls._current
        if current is None or time.time() >= cls._renew_at:
            current = super().generateCertificate()
            cls._current = current
            cls._renew_at = current.expires.timestamp() - RENEW_BEFORE_EXPIRY_SECONDS
        return current

    def getFingerprints(self) -> list[RTCDtlsFingerprint]:  # noqa: N802 - aiortc's name
        if self._fingerprints is None:
            self._fingerprints = super().getFingerprints()
        return self._fingerprints

    def _create_ssl_context(self, srtp_profiles: list[SRTPProtectionProfile]) -> SSL.Context:
        # A context only carries settings and the key; each connection's state is in
        # its own SSL.Connection, so one context per profile list serves them all.
        key = tuple(profile.openssl_profile for profile in srtp_profiles)
        context = self._contexts.get(key)
        if context is None:
            context = self._contexts[key] = super()._create_ssl_context(srtp_profiles)
        return context

    def ssl_context(self, srtp_profiles: list[SRTPProtectionProfile]) -> SSL.Context:
        """The context a handshake with `srtp_profiles` uses."""
        return self._create_ssl_context(srtp_profiles)

    @classmethod
    def forget(cls) -> None:
        """Make the next peer connection's certificate a new one."""
        cls._renew_at = 0.0


def share_one_certificate() -> None:
    """aiortc looks its certificate class up by name when a peer connection is made:
    every peer connection of this process gets the worker's certificate from now on."""
    aiortc.rtcpeerconnection.RTCCertificate = WorkerCertificate  # type: ignore[misc]
