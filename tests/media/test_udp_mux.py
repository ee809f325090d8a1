"""The worker's ICE mux: every peer of a worker on one UDP port, each datagram to its own
connection, and no forged check moving a peer's media elsewhere."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable, Iterator

import pytest
from aioice import Candidate, Connection, stun
from aioice.ice import get_host_addresses

from media_node.transport import aiortc_seams as seams
from media_node.transport.udp_mux import MAX_ADDRESSES_PER_CONNECTION, UdpMux, binding_request_ufrag
from peer.tones import peak_hz

from .conftest import NodeProcess
from .peers import Peer

pytestmark = pytest.mark.slow


def _free_udp_ports(count: int) -> int:
    """A base port with `count` free UDP ports from it."""
    for _ in range(200):
        base = random.randrange(20000, 40000)
        sockets = []
        try:
            for offset in range(count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind(("0.0.0.0", base + offset))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free UDP ports")


def _host_ports(sdp: str) -> set[int]:
    ports = set()
    for line in sdp.splitlines():
        fields = line.split(" ")
        if line.startswith("a=candidate:") and fields[7] == "host" and "." in fields[4]:
            ports.add(int(fields[5]))
    return ports


@pytest.fixture(scope="module")
def muxed(start_node: Callable[..., NodeProcess]) -> Iterator[tuple[NodeProcess, int]]:
    base = _free_udp_ports(2)
    node = start_node(WORKERS="2", UDP_PORT=str(base))
    yield node, base
    node.stop()


def test_every_peer_of_a_worker_is_on_the_workers_one_port_and_hears_its_own_space(
    muxed: tuple[NodeProcess, int],
) -> None:
    node, base = muxed
    spaces = {"sp_mux_a": 440, "sp_mux_b": 660}

    async def scenario() -> None:
        peers: dict[str, list[Peer]] = {}
        try:
            for space, hz in spaces.items():
                host = Peer(node.url, space, tone_hz=hz)
                await host.join(node.token(f"u_host_{space}", space, "host"))
                listeners = [Peer(node.url, space) for _ in range(4)]
                for i, listener in enumerate(listeners):
                    await listener.join(node.token(f"u_{space}_{i}", space))
                peers[space] = [host, *listeners]
            everyone = [p for group in peers.values() for p in group]
            await asyncio.gather(*(p.connected(timeout=20) for p in everyone))
            workers = {space: group[0].worker for space, group in peers.items()}
            assert sorted(workers.values()) == [0, 1]
            for space, group in peers.items():
                for peer in group:
                    # The answer's IPv4 host candidates: the worker's port, nothing else.
                    assert _host_ports(peer.pc.remoteDescription.sdp) == {
                        base + workers[space]
                    }
            for space, hz in spaces.items():
                for listener in peers[space][1:]:
                    await listener.hear(hz, present=True, timeout=10)
            # One leaves: the others on the same socket go on hearing.
            gone = peers["sp_mux_a"].pop()
            await gone.leave()
            await gone.close()
            await asyncio.sleep(1.0)
            for listener in peers["sp_mux_a"][1:]:
                await listener.hear(440, present=True, timeout=5)
                assert abs(peak_hz(listener.recent(0.5)) - 440) <= 4
        finally:
            await asyncio.gather(*(p.close() for group in peers.values() for p in group))

    asyncio.run(scenario())
    logged = [line for line in node.log_lines() if line.get("message") == "worker serving"]
    assert sorted(p for line in logged for p in line["ice"]["ports"]) == [base, base + 1]


def test_an_unset_udp_port_still_puts_a_workers_peers_on_one_port(node: NodeProcess) -> None:
    async def scenario() -> None:
        space = "sp_mux_any_port"
        host = Peer(node.url, space, tone_hz=550)
        listeners = [Peer(node.url, space) for _ in range(3)]
        try:
            await host.join(node.token("u_host_any", space, "host"))
            for i, listener in enumerate(listeners):
                await listener.join(node.token(f"u_any_{i}", space))
            ports = [_host_ports(p.pc.remoteDescription.sdp) for p in [host, *listeners]]
            assert len(ports[0]) == 1
            assert all(p == ports[0] for p in ports)
            await asyncio.gather(*(p.connected(timeout=20) for p in listeners))
            for listener in listeners:
                await listener.hear(550, present=True, timeout=10)
        finally:
            await asyncio.gather(*(p.close() for p in [host, *listeners]))

    asyncio.run(scenario())


def test_the_ufrag_is_read_from_binding_requests_only() -> None:
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    request.attributes["USERNAME"] = "ours:theirs"
    request.add_message_integrity(b"password")
    request.add_fingerprint()
    assert binding_request_ufrag(bytes(request)) == "ours"
    response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE)
    response.attributes["USERNAME"] = "ours:theirs"
    assert binding_request_ufrag(bytes(response)) is None
    no_colon = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    no_colon.attributes["USERNAME"] = "ours"
    assert binding_request_ufrag(bytes(no_colon)) is None
    assert binding_request_ufrag(b"\x80\x6f" + bytes(30)) is None  # RTP
    assert binding_request_ufrag(bytes(request)[:24]) is None  # cut short


def _forged_check(ufrag: str, remote: str, password: bytes) -> bytes:
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    request.attributes["USERNAME"] = f"{ufrag}:{remote}"
    request.attributes["PRIORITY"] = 1
    request.attributes["ICE-CONTROLLING"] = 1
    request.add_message_integrity(password)
    request.add_fingerprint()
    return bytes(request)


def test_two_ice_connections_share_one_socket_and_a_forged_check_moves_nothing() -> None:
    addresses = get_host_addresses(use_ipv4=True, use_ipv6=False)
    if not addresses:
        pytest.skip("no IPv4 interface address")

    async def scenario() -> None:
        mux = await UdpMux.open(addresses, 0)
        servers = [Connection(ice_controlling=False) for _ in range(2)]
        clients = [Connection(ice_controlling=True) for _ in range(2)]
        for server in servers:
            server.get_component_candidates = mux._gatherer(server)  # type: ignore[method-assign]
        try:
            for conn in servers + clients:
                await conn.gather_candidates()
            # IPv4 candidates on the mux; IPv6 ones (if any) on aioice's own sockets.
            mux_ports = {c.port for s in servers for c in s.local_candidates if "." in c.host}
            assert len(mux_ports) == 1
            (mux_port,) = mux_ports
            for server, client in zip(servers, clients, strict=True):
                server.remote_username, server.remote_password = (
                    client.local_username,
                    client.local_password,
                )
                client.remote_username, client.remote_password = (
                    server.local_username,
                    server.local_password,
                )
                for a, b in ((server, client), (client, server)):
                    for candidate in b.local_candidates:
                        await a.add_remote_candidate(candidate)
                    await a.add_remote_candidate(None)
            await asyncio.wait_for(asyncio.gather(*(c.connect() for c in servers + clients)), 10)

            # Each datagram to its own connection, both ways.
            await clients[0].send(b"to the first")
            await clients[1].send(b"to the second")
            assert await asyncio.wait_for(servers[0].recv(), 5) == b"to the first"
            assert await asyncio.wait_for(servers[1].recv(), 5) == b"to the second"
            await servers[1].send(b"from the second")
            assert await asyncio.wait_for(clients[1].recv(), 5) == b"from the second"

            # A check naming the second connection, from the first client's address,
            # without the second's password: the first client's media stays the first's.
            pair = seams.nominated_pair(clients[0])
            target = (pair.remote_candidate.host, mux_port)
            forged = _forged_check(servers[1].local_username, "x", b"not the password")
            pair.protocol.transport.sendto(forged, target)
            await asyncio.sleep(0.2)
            await clients[0].send(b"still the first's")
            assert await asyncio.wait_for(servers[0].recv(), 5) == b"still the first's"
            (port,) = mux.ports.values()
            assert port.unrouted >= 1

            # A closed connection lets go of its addresses; the socket serves the other.
            await servers[0].close()
            assert port.connections == 1
            await clients[1].send(b"after the first closed")
            assert await asyncio.wait_for(servers[1].recv(), 5) == b"after the first closed"
            assert port.transport is not None
        finally:
            for conn in servers + clients:
                await conn.close()
            mux.close()

    asyncio.run(scenario())


def test_a_ufrag_in_use_falls_back_to_aioices_own_socket() -> None:
    addresses = get_host_addresses(use_ipv4=True, use_ipv6=False)
    if not addresses:
        pytest.skip("no IPv4 interface address")

    async def scenario() -> None:
        mux = await UdpMux.open(addresses, 0)
        first = Connection(ice_controlling=False)
        # An offer that is not bundled: aiortc gives every transport the first's ufrag.
        second = Connection(
            ice_controlling=False,
            local_username=first.local_username,
            local_password=first.local_password,
        )
        for conn in (first, second):
            conn.get_component_candidates = mux._gatherer(conn)  # type: ignore[method-assign]
        try:
            await first.gather_candidates()
            await second.gather_candidates()
            shared = {c.port for c in first.local_candidates if "." in c.host}
            own: list[Candidate] = [c for c in second.local_candidates if "." in c.host]
            assert len(shared) == 1
            assert own
            assert not shared & {c.port for c in own}
        finally:
            await first.close()
            await second.close()
            mux.close()

    asyncio.run(scenario())


async def _connected_pairs(mux: UdpMux, count: int) -> tuple[list[Connection], list[Connection]]:
    """`count` server connections on the mux, each connected to a client of its own."""
    servers = [Connection(ice_controlling=False) for _ in range(count)]
    clients = [Connection(ice_controlling=True) for _ in range(count)]
    for server in servers:
        server.get_component_candidates = mux._gatherer(server)  # type: ignore[method-assign]
    for conn in servers + clients:
        await conn.gather_candidates()
    for server, client in zip(servers, clients, strict=True):
        server.remote_username, server.remote_password = (
            client.local_username, client.local_password)
        client.remote_username, client.remote_password = (
            server.local_username, server.local_password)
        for a, b in ((server, client), (client, server)):
            for candidate in b.local_candidates:
                await a.add_remote_candidate(candidate)
            await a.add_remote_candidate(None)
    await asyncio.wait_for(asyncio.gather(*(c.connect() for c in servers + clients)), 10)
    return servers, clients


def test_a_check_claims_no_address_without_the_connections_password() -> None:
    addresses = get_host_addresses(use_ipv4=True, use_ipv6=False)
    if not addresses:
        pytest.skip("no IPv4 interface address")

    async def scenario() -> None:
        mux = await UdpMux.open(addresses[:1], 0)
        (port,) = mux.ports.values()
        server = Connection(ice_controlling=False)
        server.get_component_candidates = mux._gatherer(server)  # type: ignore[method-assign]
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.bind((addresses[0], 0))
        source = stranger.getsockname()
        try:
            await server.gather_candidates()
            ufrag, password = server.local_username, server.local_password.encode()
            # The first check from an address, naming the connection, wrong password.
            stranger.sendto(_forged_check(ufrag, "x", b"not the password"), port.address)
            await asyncio.sleep(0.2)
            assert port._by_address.get(source) is None
            assert port.unrouted == 1
            # DTLS or RTP from that address now goes nowhere.
            stranger.sendto(b"\x16\xfe\xfd" + bytes(20), port.address)
            await asyncio.sleep(0.1)
            assert port.unrouted == 2
            # With the password, the check claims the address for the connection.
            stranger.sendto(_forged_check(ufrag, "x", password), port.address)
            await asyncio.sleep(0.2)
            assert port._by_address.get(source) is port._by_ufrag[ufrag]
        finally:
            stranger.close()
            await server.close()
            mux.close()

    asyncio.run(scenario())


def test_a_nominated_address_stays_even_on_a_verified_check() -> None:
    addresses = get_host_addresses(use_ipv4=True, use_ipv6=False)
    if not addresses:
        pytest.skip("no IPv4 interface address")

    async def scenario() -> None:
        mux = await UdpMux.open(addresses, 0)
        servers: list[Connection] = []
        clients: list[Connection] = []
        try:
            servers, clients = await _connected_pairs(mux, 2)
            (port,) = mux.ports.values()
            pair = seams.nominated_pair(clients[0])
            # The second peer knows its own connection's password and sends a check for
            # it from the first peer's address (as a spoofed source would).
            check = _forged_check(servers[1].local_username, "x",
                                  servers[1].local_password.encode())
            pair.protocol.transport.sendto(check, (pair.remote_candidate.host,
                                                   port.address[1]))
            await asyncio.sleep(0.2)
            assert port.refused_claims >= 1
            await clients[0].send(b"still the first's")
            assert await asyncio.wait_for(servers[0].recv(), 5) == b"still the first's"
        finally:
            for conn in servers + clients:
                await conn.close()
            mux.close()

    asyncio.run(scenario())


def test_a_connection_holds_a_bounded_number_of_addresses() -> None:
    addresses = get_host_addresses(use_ipv4=True, use_ipv6=False)
    if not addresses:
        pytest.skip("no IPv4 interface address")

    async def scenario() -> None:
        mux = await UdpMux.open(addresses[:1], 0)
        (port,) = mux.ports.values()
        server = Connection(ice_controlling=False)
        server.get_component_candidates = mux._gatherer(server)  # type: ignore[method-assign]
        try:
            await server.gather_candidates()
            protocol = port._by_ufrag[server.local_username]
            claimed = [port.claim((f"198.51.100.{i}", 40000), protocol) for i in range(100)]
            assert sum(claimed) == MAX_ADDRESSES_PER_CONNECTION
            assert port.refused_claims == 100 - MAX_ADDRESSES_PER_CONNECTION
        finally:
            await server.close()
            mux.close()

    asyncio.run(scenario())
