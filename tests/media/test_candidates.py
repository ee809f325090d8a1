"""An offer's candidates: at most MAX_REMOTE_CANDIDATES of them, and none that point the
node into its own private networks (it sends no check there), while a peer that is
really at such an address still connects."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from media_node.candidates import MAX_REMOTE_CANDIDATES, CandidatePolicy, parse_networks

from .conftest import NodeProcess
from .peers import Peer, post_offer

pytestmark = pytest.mark.slow


def _line(address: str, port: int, kind: str = "host", priority: int = 2130706431) -> str:
    return f"a=candidate:x{port} 1 udp {priority} {address} {port} typ {kind}"


def test_the_policy_drops_private_and_never_peer_addresses() -> None:
    policy = CandidatePolicy(parse_networks("10.0.0.0/16, 127.0.0.0/8", "PRIVATE_NETWORKS"),
                             parse_networks("10.0.9.0/24", "TRUSTED_RELAY_NETWORKS"))
    sdp = "\r\n".join([
        "v=0", "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        _line("203.0.113.7", 5000),
        _line("10.0.3.4", 5001),                  # the VPC: another task, maybe
        _line("127.0.0.1", 5002),                 # the node's own loopback
        _line("169.254.169.254", 80),             # a metadata endpoint
        _line("224.0.0.251", 5353),               # multicast
        _line("10.0.9.8", 5003, kind="relay"),    # the deployment's own TURN relay
        _line("10.0.9.8", 5004),                  # the same range, not as a relay
        _line("3b1f2c.local", 5005),              # a browser's mDNS name
        _line("2001:db8::1", 5006),
    ]) + "\r\n"
    screened, dropped = policy.screen(sdp)
    kept = [line.split()[4] + ":" + line.split()[5] for line in screened.splitlines()
            if line.startswith("a=candidate:")]
    assert kept == ["203.0.113.7:5000", "10.0.9.8:5003", "2001:db8::1:5006"]
    assert dropped == 6
    # Without private networks (one machine): only the never-peer addresses go.
    _, dropped = CandidatePolicy().screen(sdp)
    assert dropped == 2
    with pytest.raises(ValueError, match="PRIVATE_NETWORKS"):
        parse_networks("10.0.0.0/33", "PRIVATE_NETWORKS")


def test_an_offer_with_too_many_candidates_is_refused(node: NodeProcess, space: str) -> None:
    async def scenario() -> tuple[int, str]:
        peer = Peer(node.url, space)
        try:
            offer = await peer.offer()
            extra = [_line("203.0.113.9", 10000 + i) for i in range(MAX_REMOTE_CANDIDATES + 1)]
            lines = offer.splitlines()
            at = next(i for i, line in enumerate(lines) if line.startswith("a=candidate:"))
            flooded = "\r\n".join(lines[:at] + extra + lines[at:]) + "\r\n"
            status, body, _ = await post_offer(node.url, space, node.token("u_flood", space),
                                               flooded)
            return status, body
        finally:
            await peer.close()

    status, body = asyncio.run(scenario())
    assert status == 400
    assert '"too_many_candidates"' in body


def _checks_seen(node: NodeProcess, space: str) -> tuple[int, bool]:
    """Joins with an offer that also names a UDP socket of this test on loopback (a
    service inside the node's network, as the node sees it); how many datagrams that
    socket got from the node, and whether the peer itself connected."""
    bait = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bait.bind(("127.0.0.1", 0))
    bait.setblocking(False)
    port = bait.getsockname()[1]

    async def scenario() -> tuple[int, bool]:
        peer = Peer(node.url, space)
        try:
            offer = await peer.offer()
            lines = offer.splitlines()
            at = next(i for i, line in enumerate(lines) if line.startswith("a=candidate:"))
            baited = "\r\n".join([*lines[:at], _line("127.0.0.1", port), *lines[at:]]) + "\r\n"
            await peer.join(node.token(f"u_{port}", space), sdp=baited)
            got = 0
            for _ in range(40):
                await asyncio.sleep(0.1)
                try:
                    while bait.recv(2048):
                        got += 1
                except BlockingIOError:
                    pass
            await peer.connected(timeout=10)
            return got, peer.pc.connectionState == "connected"
        finally:
            await peer.close()
            bait.close()

    return asyncio.run(scenario())


def test_the_node_sends_no_check_into_its_private_networks(
    start_node: Callable[..., NodeProcess], node: NodeProcess,
) -> None:
    # Without PRIVATE_NETWORKS (one machine): the node checks every candidate offered.
    got, connected = _checks_seen(node, "sp_cand_open")
    assert connected
    assert got > 0
    guarded = start_node(PRIVATE_NETWORKS="127.0.0.0/8")
    try:
        got, connected = _checks_seen(guarded, "sp_cand_guarded")
        assert got == 0
        # The peer is not at the refused address: its own checks still connect it.
        assert connected
    finally:
        guarded.stop()
