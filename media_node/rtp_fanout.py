"""The fast outbound path: a room's encoded packets to all its peers in one pass.

aiortc's RTCRtpSender costs about 100-140 us of CPU per outbound packet even when it
only packetizes pre-encoded audio: a coroutine and a queue per peer, a fresh RtpPacket
with header extensions and clock calls per packet, and an awaited send through the ICE
connection. For a room that sends the same payload to every listener, all of that is
per-listener overhead around the only work that must differ: the RTP header (sequence
number, timestamp, SSRC), SRTP protection with the peer's own keys, and one sendto on
the peer's own UDP socket.

An `RtpStream` holds exactly that, taken from the peer connection once ICE and DTLS are
up: the header bytes pre-built (only sequence number and timestamp change), the DTLS
transport's SRTP session and the nominated candidate pair's socket and address.
`send_to_all` then loops over the streams with no awaits, no queues and no allocation
beyond the protected datagram itself.

aiortc's RTCRtpSender is never started for such a peer (`take_over`): its RTP loop and
its RTCP loop (a sender report every 0.5-1.5 s, each built from objects and sent through
the ICE connection's coroutines) cost tens of microseconds per listener per packet
between them. The sender is still registered with the DTLS transport, so the peer's
receiver reports reach it as before; the stream sends its own sender reports, every
5 seconds (RFC 3550's minimum interval), from bytes built in one call.
aiortc keeps ICE (consent freshness included), DTLS and the receiving side.
"""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Callable, Iterable
from enum import Enum

from aiortc import RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtp import RtcpSdesPacket, RtcpSenderInfo, RtcpSourceInfo, RtcpSrPacket

# Version 2, no padding; the X bit is set when the mid extension is carried.
RTP_VERSION = 0x80
EXTENSION_BIT = 0x10
# RFC 8285 one-byte header extensions.
ONE_BYTE_PROFILE = 0xBEDE
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
SDES_CNAME = 1


class Fanout(Enum):
    """How a room's audio reaches its peers (env `RTP_FANOUT`).

    `fast` is the node's path. The other two are the baselines the benchmark compares
    it with, kept runnable in the real node so the comparison is like for like:
    `aiortc` hands the shared encoded packets to each peer's stock RTCRtpSender, and
    `aiortc-encode` is the pattern of aiortc's examples (every peer's sender gets the
    decoded mix and encodes it itself).
    """

    FAST = "fast"
    AIORTC = "aiortc"
    AIORTC_ENCODE = "aiortc-encode"


class StreamGone(Exception):
    """The peer's transport is not (or no longer) able to carry SRTP."""


class RtpStream:
    """One peer's outbound audio stream, sent without aiortc's per-sender loop."""

    __slots__ = (
        "_cname",
        "_sender",
        "_socket",
        "address",
        "dropped",
        "lead",
        "octets",
        "pack",
        "protect",
        "sent",
        "sequence",
        "tail",
        "timestamp_origin",
        "transport",
    )

    def __init__(self, sender: RTCRtpSender, parameters: RTCRtpSendParameters) -> None:
        self._sender = sender
        self.transport: RTCDtlsTransport = sender.transport
        # Random starting points, as RFC 3550 asks; the sequence number in the lower
        # half of its range, as aiortc does, so SRTP's rollover guess never wraps early.
        self.sequence = random.getrandbits(15)
        self.timestamp_origin = random.getrandbits(32)
        self.sent = 0
        self.octets = 0
        self.dropped = 0
        self.lead = b""
        self.tail = b""
        self.pack: Callable[..., bytes] = bytes
        self.address: tuple[str, int] = ("", 0)
        self._socket: socket.socket | None = None
        self._cname = b""
        self.configure(parameters)
        self.refresh_route()
        # Bound once: the SRTP session object lives as long as the DTLS transport.
        self.protect = self.transport._tx_srtp.protect

    def configure(self, parameters: RTCRtpSendParameters) -> None:
        """Build the header from the negotiated payload type and mid (again after a PATCH)."""
        codecs = parameters.codecs
        payload_type = codecs[0].payloadType if codecs else None
        if payload_type is None:
            raise StreamGone("no codec negotiated")
        self._cname = (parameters.rtcp.cname or "").encode()
        mid = (parameters.muxId or "").encode()
        mid_id = next((ext.id for ext in parameters.headerExtensions if ext.uri == MID_URI), None)
        first = RTP_VERSION
        extension = b""
        if mid_id is not None and 0 < len(mid) <= 16:
            # Browsers demultiplex by SSRC too, but the mid is what BUNDLE relies on
            # first, and stock aiortc sends it: keep the bytes on the wire the same.
            element = bytes([(mid_id << 4) | (len(mid) - 1)]) + mid
            element += b"\x00" * (-len(element) % 4)
            extension = struct.pack("!HH", ONE_BYTE_PROFILE, len(element) // 4) + element
            first |= EXTENSION_BIT
        # The header is lead + sequence number + timestamp + tail; one Struct packs it
        # in a single call, the cheapest way found to make it per packet.
        self.lead = bytes([first, payload_type])
        self.tail = struct.pack("!I", self._sender._ssrc) + extension
        self.pack = struct.Struct(f"!2sHI{len(self.tail)}s").pack

    def refresh_route(self) -> None:
        """Take the socket and remote address of the nominated ICE candidate pair."""
        if self.transport.state != "connected" or self.transport._tx_srtp is None:
            raise StreamGone(f"DTLS is {self.transport.state}")
        pair = self.transport.transport._connection._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            raise StreamGone("ICE has no nominated pair")
        if self._socket is None:
            transport_socket = pair.protocol.transport.get_extra_info("socket")
            # A duplicate of aioice's non-blocking socket: sending on it skips the
            # asyncio transport's bookkeeping, and a full send buffer drops this peer's
            # packet (an exception below) instead of queueing behind it.
            self._socket = socket.fromfd(
                transport_socket.fileno(), transport_socket.family, transport_socket.type
            )
            self._socket.setblocking(False)
        self.address = pair.remote_addr

    def send_report(self, ntp_time: int, pts: int) -> None:
        """Send an RTCP sender report (with the CNAME) for the instant `ntp_time` / `pts`."""
        ssrc = self._sender._ssrc
        report = bytes(
            RtcpSrPacket(
                ssrc=ssrc,
                sender_info=RtcpSenderInfo(
                    ntp_timestamp=ntp_time,
                    rtp_timestamp=(self.timestamp_origin + pts) & 0xFFFFFFFF,
                    packet_count=self.sent & 0xFFFFFFFF,
                    octet_count=self.octets & 0xFFFFFFFF,
                ),
            )
        ) + bytes(
            RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=ssrc, items=[(SDES_CNAME, self._cname)])])
        )
        if self._socket is not None:
            try:
                self._socket.sendto(self.transport._tx_srtp.protect_rtcp(report), self.address)
            except OSError:
                self.dropped += 1

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self.address = ("", 0)


def take_over(sender: RTCRtpSender, started: Callable[[RTCRtpSendParameters], None]) -> None:
    """Keep aiortc from starting `sender`'s loops; call `started` when it would have.

    RTCPeerConnection calls `sender.send(parameters)` once DTLS is up (and again after
    each renegotiation), which is exactly when a stream can be made (or reconfigured).
    """

    async def send(parameters: RTCRtpSendParameters) -> None:
        # What aiortc's send() does besides starting its loops: the peer's RTCP about
        # this SSRC (receiver reports) is routed to the sender.
        sender.transport._register_rtp_sender(sender, parameters)
        started(parameters)

    sender.send = send  # type: ignore[method-assign]


def send_to_all(streams: Iterable[RtpStream], payload: bytes, pts: int) -> int:
    """Send one encoded packet to every stream; the number actually handed to the kernel.

    The loop is written out (local names, no method calls per stream beyond protect and
    sendto) because it is the node's whole per-listener cost.
    """
    size = len(payload)
    sent = 0
    for stream in streams:
        sequence = stream.sequence
        stream.sequence = (sequence + 1) & 0xFFFF
        header = stream.pack(
            stream.lead, sequence, (stream.timestamp_origin + pts) & 0xFFFFFFFF, stream.tail
        )
        sock = stream._socket
        try:
            if sock is None:
                raise StreamGone
            sock.sendto(stream.protect(header + payload), stream.address)
        except (OSError, StreamGone):
            # A full socket buffer (a stalled peer) or a closed stream: this peer
            # misses this packet, nobody else waits for it. The sequence number still
            # advanced, so the receiver sees the gap as loss, which it is.
            stream.dropped += 1
            continue
        stream.sent += 1
        stream.octets += size
        sent += 1
    return sent
