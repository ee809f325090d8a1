"""The fast outbound path: a room's encoded packets to all its peers in one C loop.

aiortc's RTCRtpSender costs tens of microseconds of CPU per outbound packet even when it
only packetizes pre-encoded audio: a coroutine and a queue per peer, a fresh RtpPacket
with header extensions and clock calls per packet, and an awaited send through the ICE
connection. For a room that sends the same payload to every listener, the only work
that must differ per listener is the RTP header (sequence number, timestamp, SSRC),
SRTP protection with the peer's own keys and one sendto on the peer's own UDP socket.
Even a tight Python loop spent most of its time in the interpreter around those calls,
so the loop is C (`media_node/transport/native/`, built as
`media_node/transport/_fanout.abi3.so`).

An `RtpStream` is set up from the peer connection once ICE and DTLS are up: the DTLS
transport's outbound SRTP session (the libsrtp session aiortc keyed from the handshake,
which its own sender would have used; with AES-GCM the stream's own cipher context,
keyed from the same handshake, see srtp_gcm.py), the header template (payload type,
SSRC, mid extension) and a duplicate of the nominated candidate pair's socket.
`send_to_all` then sends one packet to any number of streams without a Python object
per listener beyond the iteration.

aiortc's RTCRtpSender is never started for such a peer (`take_over`): neither its RTP
loop nor its RTCP loop runs. The stream sends its own sender reports, every 5 seconds
(RFC 3550's minimum interval), and takes the peer's receiver reports off the socket
before aiortc sees them: a listener's RTCP never reaches aiortc's queues.

ICE consent freshness (RFC 7675) of the nominated pair is the stream's too, in C: a
`Tap` in front of each of the connection's aioice protocols answers the peer's consent
checks and takes the answers to the stream's own, which `upkeep` sends every 4-6 s;
aioice's consent task is stopped (it would no longer see those answers, and would close
the connection 30 s on). A stream that loses consent stops sending at once, and
`consent_lost` closes the ICE connection as aioice itself does then, so the peer
connection fails and its participant is removed like any failed peer. aiortc keeps the
rest of ICE (the connectivity checks, any other pair's STUN), DTLS and the receiving
side. What of aiortc, aioice and pylibsrtp is private is reached through
aiortc_seams.py.
"""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Callable
from typing import Any

from aioice.candidate import candidate_priority
from aiortc import RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpSendParameters

from . import aiortc_seams as seams
from . import srtp_gcm

try:
    from . import _fanout
except ImportError as exc:  # pragma: no cover - a checkout that skipped the build
    raise ImportError(
        "media_node.transport._fanout is not built: run `make up` or `make test` (or "
        "`sh media_node/transport/native/build.sh .venv/bin/python "
        "media_node/transport/_fanout.abi3.so`; "
        "needs gcc and the headers of Python, OpenSSL 3 and zlib)"
    ) from exc

# RFC 8285 one-byte header extensions.
ONE_BYTE_PROFILE = 0xBEDE
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
_fanout.use_srtp(*seams.srtp_function_addresses())

Stream = _fanout.Stream
send_to_all = _fanout.send
# Each tick, over all of a room's streams: consent checks and sender reports that are due;
# the streams that have just lost consent.
upkeep = _fanout.upkeep


class StreamSet:
    """A room's C streams by session id, handed to C as one tuple: the send loop walks
    a tuple fastest and reads the next stream into the cache while it sends to this
    one. The tuple is rebuilt at the first tick after the set changed, not per packet."""

    __slots__ = ("_by_session", "_ordered")

    def __init__(self) -> None:
        self._by_session: dict[str, Stream] = {}
        self._ordered: tuple[Stream, ...] | None = ()

    def put(self, session_id: str, stream: Stream) -> None:
        if self._by_session.get(session_id) is not stream:
            self._by_session[session_id] = stream
            self._ordered = None

    def discard(self, session_id: str) -> None:
        if self._by_session.pop(session_id, None) is not None:
            self._ordered = None

    def all(self) -> tuple[Stream, ...]:
        if self._ordered is None:
            self._ordered = tuple(self._by_session.values())
        return self._ordered

    def __len__(self) -> int:
        return len(self._by_session)


class StreamGone(Exception):
    """The peer's transport is not (or no longer) able to carry SRTP."""


class RtpStream:
    """One peer's outbound audio stream: the C stream and what keeps it routed."""

    __slots__ = ("_closing", "_connection", "_pair", "_sender", "_taps", "native", "transport")

    def __init__(self, sender: RTCRtpSender, parameters: RTCRtpSendParameters) -> None:
        self._sender = sender
        self.transport: RTCDtlsTransport = sender.transport
        srtp, inbound = seams.srtp_sessions(self.transport)
        if self.transport.state != "connected" or srtp is None or inbound is None:
            raise StreamGone(f"DTLS is {self.transport.state}")
        self.native = _fanout.Stream(
            # The C stream keeps the Session objects, and so their libsrtp contexts, alive.
            owner=srtp,
            session=seams.srtp_context(srtp),
            ssrc=seams.sender_ssrc(sender),
            # Random starting points, as RFC 3550 asks; the sequence number in the
            # lower half of its range, as aiortc does, so SRTP's rollover guess never
            # wraps early.
            sequence=random.getrandbits(15),
            timestamp_origin=random.getrandbits(32),
            # The peer's receiver reports are unprotected with it, in C.
            inbound_owner=inbound,
            inbound_session=seams.srtp_context(inbound),
        )
        # AES-GCM RTP is protected by the C stream itself (OpenSSL), the rest by libsrtp.
        keys = srtp_gcm.outbound_keys(self.transport)
        if keys is not None:
            self.native.use_gcm(*keys)
        self._connection: Any = seams.ice_connection(self.transport)
        self._pair: Any = None
        self._taps: list[Any] = []
        self._closing: asyncio.Future[None] | None = None
        self.configure(parameters)
        self.refresh_route()
        self._take_consent()
        self._tap()

    def configure(self, parameters: RTCRtpSendParameters) -> None:
        """Build the header from the negotiated payload type and mid (again after a PATCH)."""
        codecs = parameters.codecs
        payload_type = codecs[0].payloadType if codecs else None
        if payload_type is None:
            raise StreamGone("no codec negotiated")
        mid = (parameters.muxId or "").encode()
        mid_id = next((ext.id for ext in parameters.headerExtensions if ext.uri == MID_URI), None)
        extension = b""
        if mid_id is not None and 0 < len(mid) <= 16:
            # Browsers demultiplex by SSRC too, but the mid is what BUNDLE relies on
            # first, and stock aiortc sends it: keep the bytes on the wire the same.
            element = bytes([(mid_id << 4) | (len(mid) - 1)]) + mid
            element += b"\x00" * (-len(element) % 4)
            extension = struct.pack("!HH", ONE_BYTE_PROFILE, len(element) // 4) + element
        self.native.configure(
            payload_type=payload_type,
            extension=extension,
            cname=(parameters.rtcp.cname or "").encode(),
        )

    def refresh_route(self) -> None:
        """Follow the nominated ICE candidate pair: its socket and remote address.

        Called for every stream twice a second, so the common case (same pair, DTLS
        up) is two identity checks: `state` and `remote_addr` are properties that
        cost more than the check itself.
        """
        transport = self.transport
        if not seams.dtls_connected(transport):
            raise StreamGone(f"DTLS is {transport.state}")
        pair = seams.nominated_pair(self._connection)
        if pair is self._pair and pair is not None:
            return
        if pair is None or pair.protocol.transport is None:
            raise StreamGone("ICE has no nominated pair")
        host, port = pair.remote_addr[:2]
        if self._pair is None or pair.protocol is not self._pair.protocol:
            sock = pair.protocol.transport.get_extra_info("socket")
            self.native.route(host, port, fd=sock.fileno())
        else:
            self.native.route(host, port)
        self._pair = pair

    def _take_consent(self) -> None:
        """Make consent freshness for the nominated pair the C stream's, not aioice's.

        aioice's consent task sends a check every 4-6 s from Python, and closes the
        connection after six unanswered ones; its answers now go to the C stream, so the
        task is stopped. It is a task of its own, cancelled like close() cancels it:
        nothing else in the connection (the checks of other pairs, DTLS, closing)
        depends on it.
        """
        connection = self._connection
        self.native.ice(
            local_username=connection.local_username,
            local_password=connection.local_password,
            remote_username=connection.remote_username,
            remote_password=connection.remote_password,
            controlling=connection.ice_controlling,
            tie_breaker=seams.tie_breaker(connection),
            priority=candidate_priority(seams.COMPONENT, "prflx"),
        )
        seams.stop_consent(connection)

    def _tap(self) -> None:
        """Take the peer's consent STUN and receiver reports off the socket, in C.

        Through aioice and aiortc, each would cost Python: a STUN parse (aioice tries
        every datagram as STUN first), HMACs, a queue hand-off, a coroutine step, RTCP
        objects. Per listener that is a consent check, an answer to ours and a receiver
        report every 5 s or so. What the tap does not take goes on as before.
        """
        for protocol in seams.protocols(self._connection):
            transport = getattr(protocol, "transport", None)
            sock = transport.get_extra_info("socket") if transport is not None else None
            seams.tap_datagrams(protocol, _fanout.Tap(
                self.native, protocol.datagram_received, sock.fileno() if sock else -1))
            self._taps.append(protocol)

    def send_report(self, ntp_time: int, pts: int) -> None:
        """Send an RTCP sender report (with the CNAME) for the instant `ntp_time` / `pts`.

        `upkeep` sends them every 5 s; this sends one now.
        """
        self.native.send_report(ntp_time, pts)

    def consent_lost(self) -> None:
        """Consent expired (the C stream has stopped sending): close the ICE connection.

        That is what aioice does when its own consent expires, so the peer connection
        fails and the participant is removed like any failed peer.
        """
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._connection.close())

    def close(self) -> None:
        self.native.close()
        for protocol in self._taps:
            seams.untap(protocol)
        self._taps.clear()
        self._pair = None


def take_over(sender: RTCRtpSender, started: Callable[[RTCRtpSendParameters], None]) -> None:
    """Keep aiortc from starting `sender`'s loops; call `started` when it would have,
    which is exactly when a stream can be made (or reconfigured)."""
    seams.take_over_sending(sender, started)
