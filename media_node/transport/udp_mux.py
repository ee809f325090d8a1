"""Every peer connection of a worker on one UDP port per address: an ICE mux.

aioice gives each ICE connection sockets of its own, on ports the kernel picks, so a
node's firewall had to open the whole ephemeral range, and a room's fan-out made one
system call per listener and packet. Here a worker binds one socket per IPv4 host
address, on `UDP_PORT` plus its index (or any free port when `UDP_PORT` is 0), and
every connection's host candidate on that address is that socket.

Who a datagram is for:
- a STUN Binding request names it: its USERNAME is `<our ufrag>:<their ufrag>` (RFC
  8445 7.2.2), and our ufrag is the connection's. The request's source address is then
  the connection's.
- anything else (STUN answers, DTLS, SRTP, SRTCP) by its source address: one the
  connection has sent to or heard a Binding request from. ICE connectivity checks come
  before any media, so a peer's address is known before its first DTLS record.

A Binding request claims its source address for the connection it names only when
that connection's password verifies its MESSAGE-INTEGRITY, the first claim included:
a forged request can neither take a peer's media away nor route a stranger's datagrams
to a connection. An address that a connection's nominated pair uses never moves to
another connection, even on a verified request (whose sender may have spoofed the
source address). And a connection holds at most MAX_ADDRESSES_PER_CONNECTION addresses.

The connections' aioice protocols are kept, each with a transport that sends through
the shared socket: aioice (and the fast path's taps, which read the socket from the
transport) work as before. Connections whose ufrag is already in use (an offer that is
not bundled gives every transport the same ufrag) and IPv6 addresses keep aioice's own
sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any

from aioice import stun
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aioice.ice import Connection, StunProtocol
from aiortc import RTCPeerConnection

from . import aiortc_seams

log = logging.getLogger(__name__)

STUN_HEADER = struct.Struct("!HHI12s")
STUN_MAGIC_COOKIE = 0x2112A442
STUN_BINDING_REQUEST = 0x0001
STUN_USERNAME = 0x0006
# The socket is every listener's: a tick's burst of sends to all of a worker's
# listeners queues in it at once. Asked for; the kernel caps it at net.core.wmem_max
# (and rmem_max) unless the process may force it.
SEND_BUFFER_BYTES = 4 * 1024 * 1024
RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
# Addresses one connection may hold: those it sent checks to (at most the offer's
# candidates, candidates.MAX_REMOTE_CANDIDATES) and those it heard checks from.
MAX_ADDRESSES_PER_CONNECTION = 40

Address = tuple[str, int]


def binding_request_ufrag(data: bytes) -> str | None:
    """Our ufrag from a STUN Binding request's USERNAME, or None for anything else."""
    if len(data) < STUN_HEADER.size:
        return None
    kind, length, cookie, _ = STUN_HEADER.unpack_from(data)
    if kind != STUN_BINDING_REQUEST or cookie != STUN_MAGIC_COOKIE:
        return None
    end = min(len(data), STUN_HEADER.size + length)
    at = STUN_HEADER.size
    while at + 4 <= end:
        attribute, size = struct.unpack_from("!HH", data, at)
        if attribute == STUN_USERNAME:
            value = data[at + 4 : at + 4 + size]
            ours, colon, _ = value.partition(b":")
            return ours.decode("utf-8", "replace") if colon else None
        at += 4 + size + (-size % 4)
    return None


class MuxTransport(asyncio.DatagramTransport):
    """One connection's view of the shared socket: sends through it, closes only itself."""

    def __init__(self, port: MuxPort, protocol: StunProtocol) -> None:
        super().__init__()
        self._port = port
        self._protocol = protocol
        self._closing = False
        # Where this connection has sent: a peer's audio through aiortc's own sender
        # (the stock path) comes here once per packet, so the claim is made once.
        self._sent_to: set[Any] = set()

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing or addr is None:
            return
        if addr not in self._sent_to:
            self._sent_to.add(addr)
            self._port.claim((addr[0], addr[1]), self._protocol)
        transport = self._port.transport
        if transport is not None:
            transport.sendto(data, addr)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self._port.socket
        if name == "sockname":
            return self._port.address
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._port.release(self._protocol)
        # As a real transport does: connection_lost comes on a later turn of the loop.
        asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()


class MuxPort(asyncio.DatagramProtocol):
    """The shared socket on one address, and which connection each datagram is for."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.socket: socket.socket | None = None
        self.address: Address = ("", 0)
        self._by_ufrag: dict[str, StunProtocol] = {}
        self._by_address: dict[Address, StunProtocol] = {}
        self._addresses: dict[StunProtocol, set[Address]] = {}
        self.unrouted = 0
        # Claims refused: a nominated pair's address, or a connection's cap reached.
        self.refused_claims = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.socket = transport.get_extra_info("socket")
        self.address = transport.get_extra_info("sockname")[:2]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        address = (addr[0], addr[1])
        ufrag = binding_request_ufrag(data)
        protocol = self._by_address.get(address)
        if ufrag is not None:
            named = self._by_ufrag.get(ufrag)
            if named is not None and named is not protocol:
                if not _verifies(data, named) or not self.claim(address, named, take=True):
                    self.unrouted += 1
                    return
                protocol = named
        if protocol is None:
            self.unrouted += 1
            return
        # Looked up on the instance: the fast path's tap shadows the method there.
        protocol.datagram_received(data, address)

    def error_received(self, exc: Exception) -> None:
        log.debug("ice mux socket error: %s", exc)

    def open_protocol(self, connection: Connection) -> StunProtocol | None:
        """A protocol of `connection` on this socket, or None if its ufrag is taken."""
        ufrag = connection.local_username
        if ufrag in self._by_ufrag or self.transport is None:
            return None
        protocol = StunProtocol(connection)
        protocol.connection_made(MuxTransport(self, protocol))
        self._by_ufrag[ufrag] = protocol
        self._addresses[protocol] = set()
        return protocol

    def claim(self, address: Address, protocol: StunProtocol, take: bool = False) -> bool:
        """Route `address` to `protocol`: if no live connection holds it, or `take` and
        the holder's nominated pair does not use it; within the connection's cap.
        Whether `address` is now `protocol`'s."""
        holder = self._by_address.get(address)
        if holder is protocol:
            return True
        held = self._addresses.get(protocol)
        if held is None:
            return False
        if holder is not None and (not take or _nominated_at(holder, address)):
            if take:
                self.refused_claims += 1
            return False
        if len(held) >= MAX_ADDRESSES_PER_CONNECTION:
            self.refused_claims += 1
            return False
        if holder is not None:
            self._addresses[holder].discard(address)
        self._by_address[address] = protocol
        held.add(address)
        return True

    def release(self, protocol: StunProtocol) -> None:
        for address in self._addresses.pop(protocol, set()):
            if self._by_address.get(address) is protocol:
                del self._by_address[address]
        ufrag = protocol.receiver.local_username
        if self._by_ufrag.get(ufrag) is protocol:
            del self._by_ufrag[ufrag]

    @property
    def connections(self) -> int:
        return len(self._addresses)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


def _nominated_at(protocol: StunProtocol, address: Address) -> bool:
    """Whether the connection of `protocol` has nominated a pair to `address` on it."""
    return any(pair.protocol is protocol and tuple(pair.remote_addr) == address
               for pair in aiortc_seams.nominated_pairs(protocol))


def _verifies(data: bytes, protocol: StunProtocol) -> bool:
    """The Binding request's MESSAGE-INTEGRITY checks with the connection's password."""
    key = protocol.receiver.local_password.encode("utf8")
    try:
        return bool(stun.parse_message(data).check_message_integrity(key))
    except ValueError:
        return False


class UdpMux:
    """A worker's ICE sockets: one `MuxPort` per IPv4 host address, on one port number."""

    def __init__(self, ports: dict[str, MuxPort]) -> None:
        self.ports = ports

    @classmethod
    async def open(cls, addresses: list[str], port: int) -> UdpMux:
        """Bind `port` (0: any free one, then the same number on the other addresses if
        it is free there) on each IPv4 address of `addresses`."""
        loop = asyncio.get_running_loop()
        ports: dict[str, MuxPort] = {}
        for address in addresses:
            if ipaddress.ip_address(address).version != 4:
                continue
            try:
                _, mux_port = await loop.create_datagram_endpoint(
                    MuxPort, local_addr=(address, port)
                )
            except OSError:
                if port != 0:
                    raise
                continue
            _size_buffers(mux_port.socket)
            ports[address] = mux_port
            port = port or mux_port.address[1]
        return cls(ports)

    def attach(self, pc: RTCPeerConnection) -> None:
        """Have `pc`'s ICE gather its IPv4 host candidates on this worker's sockets.

        Called once the offer is applied (bundling has then removed the transports it
        replaces) and before the answer is made (which gathers)."""
        for transport in aiortc_seams.ice_transports(pc):
            connection = aiortc_seams.gatherer_connection(transport)
            aiortc_seams.replace_gatherer(connection, self._gatherer(connection))

    def _gatherer(self, connection: Connection) -> Callable[..., Any]:
        aioice_gather = connection.get_component_candidates

        async def gather(component: int, addresses: list[str], timeout: int = 5) -> list[Any]:
            candidates: list[Candidate] = []
            elsewhere = []
            for address in addresses:
                mux_port = self.ports.get(address)
                protocol = mux_port.open_protocol(connection) if mux_port else None
                if protocol is None:
                    elsewhere.append(address)
                    continue
                protocol.local_candidate = Candidate(
                    foundation=candidate_foundation("host", "udp", address),
                    component=component,
                    transport="udp",
                    priority=candidate_priority(component, "host"),
                    host=address,
                    port=mux_port.address[1],  # type: ignore[union-attr]
                    type="host",
                )
                aiortc_seams.add_protocol(connection, protocol)
                candidates.append(protocol.local_candidate)
            if elsewhere:
                candidates += await aioice_gather(component, elsewhere, timeout)
            return candidates

        return gather

    def describe(self) -> dict[str, Any]:
        return {
            "ports": sorted({p.address[1] for p in self.ports.values()}),
            "addresses": sorted(self.ports),
        }

    def close(self) -> None:
        for mux_port in self.ports.values():
            mux_port.close()


def _size_buffers(sock: socket.socket | None) -> None:
    if sock is None:
        return
    for forced, plain, size in (
        (getattr(socket, "SO_SNDBUFFORCE", None), socket.SO_SNDBUF, SEND_BUFFER_BYTES),
        (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES),
    ):
        try:
            if forced is None:
                raise PermissionError
            sock.setsockopt(socket.SOL_SOCKET, forced, size)
        except OSError:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, plain, size)
