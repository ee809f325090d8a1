"""Two nodes: signaling that lands on the wrong one is forwarded to the right one, and a
Space owned by one node is relayed by the other (docs/media-contract.md, section 7)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import jwt
import pytest

from peer.tones import peak_hz

from .conftest import REPO, Aws, Keys, MediaEvents, NodeProcess
from .peers import Peer, post_offer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nodes(start_node: Callable[..., NodeProcess]) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    first, second = start_node(), start_node()
    yield first, second
    first.stop()
    second.stop()


def test_signaling_sent_to_the_wrong_node_is_forwarded(
    nodes: tuple[NodeProcess, NodeProcess], media_events: MediaEvents
) -> None:
    """As behind a load balancer: every request goes to `front`, the Space is `home`'s."""
    front, home = nodes
    space = "sp_nodes_forward"

    async def scenario() -> None:
        host = Peer(front.url, space, tone_hz=440)
        listener = Peer(front.url, space)
        try:
            await host.join(home.token("u_host", space, "host"))
            await listener.join(home.token("u_listener", space))
            assert host.node_id == listener.node_id == home.node_id
            await asyncio.gather(host.connected(timeout=20), listener.connected(timeout=20))
            await listener.hear(440, present=True, timeout=10)
            assert (await asyncio.to_thread(home.health))["participants"] >= 2
            assert space not in json.dumps(await asyncio.to_thread(front.health))

            # The session's address works through either node.
            assert await listener.leave() == 204
            await media_events.wait_for(
                type="participant_left", space_id=space, user_id="u_listener", reason="left",
                node_id=home.node_id,
            )
            assert await listener.leave() == 404

            # A token for a node not in the registry cannot be forwarded anywhere; nor
            # is a request forwarded twice.
            stray = Peer(front.url, space)
            offer = await stray.offer()
            status, body, _ = await post_offer(
                front.url, space, home.token("u_stray", space, node="node-gone"), offer
            )
            assert (status, json.loads(body)["error"]) == (403, "wrong_node")
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{front.url}/media/spaces/{space}/sessions",
                    data=offer,
                    headers={
                        "Authorization": f"Bearer {home.token('u_stray', space)}",
                        "Content-Type": "application/sdp",
                        "X-Parlor-Forwarded-By": "node-elsewhere",
                    },
                ) as response,
            ):
                assert response.status == 403
                assert (await response.json())["error"] == "wrong_node"
            await stray.close()
        finally:
            await asyncio.gather(host.close(), listener.close())

    asyncio.run(scenario())


def test_a_space_is_relayed_by_another_node(
    nodes: tuple[NodeProcess, NodeProcess], media_events: MediaEvents
) -> None:
    """`owner` mixes the Space; the control plane placed a listener on `relay` with a
    token naming the owner as origin. The relay subscribes to the owner's feed."""
    owner, relay = nodes
    space = "sp_nodes_relay"

    async def scenario() -> None:
        host = Peer(owner.url, space, tone_hz=440)
        local = Peer(owner.url, space)
        relayed = Peer(relay.url, space)
        another = Peer(owner.url, space)  # lands on the owner, forwarded to the relay
        peers = [host, local, relayed, another]
        try:
            await host.join(owner.token("u_host", space, "host"))
            await local.join(owner.token("u_local", space))
            await relayed.join(relay.token("u_relayed", space, origin=owner.node_id))
            await another.join(relay.token("u_another", space, origin=owner.node_id))
            assert relayed.node_id == another.node_id == relay.node_id
            await asyncio.gather(*(p.connected(timeout=20) for p in peers))
            await relayed.hear(440, present=True, timeout=10)
            await asyncio.sleep(0.5)
            assert abs(peak_hz(relayed.recent(0.5)) - 440) <= 4
            # The registry says so by the relay's next heartbeat (every second here).
            deadline = time.monotonic() + 5
            while space not in ((await asyncio.to_thread(relay.registry_item)) or {}).get(
                    "relayed_spaces", []):
                assert time.monotonic() < deadline, "the relay never listed the Space"
                await asyncio.sleep(0.2)
            connected = await media_events.wait_for(
                type="participant_connected", space_id=space, user_id="u_relayed"
            )
            assert connected["node_id"] == relay.node_id

            # Moderation on the owner reaches the other node's listeners.
            await asyncio.to_thread(owner.member, space, "u_host", "host", muted=True)
            await relayed.hear(440, present=False, timeout=3)
            await relayed.wait_told("muted", user_id="u_host")
            relayed.channel.send(json.dumps({"type": "reaction", "emoji": "🎉"}))
            await host.wait_told("reaction", user_id="u_relayed", emoji="🎉")
            await another.wait_told("reaction", user_id="u_relayed", emoji="🎉")
            await asyncio.to_thread(owner.member, space, "u_another", "removed")
            await another.wait_closed(timeout=5)
            assert another.told("removed", user_id="u_another")
            assert relayed.pc.connectionState == "connected"

            await asyncio.to_thread(owner.command, type="end", space_id=space)
            await asyncio.gather(*(p.wait_closed(timeout=5) for p in (host, local, relayed)))
            assert relayed.told("space_ended")
            left = await media_events.wait_for(
                type="participant_left", space_id=space, user_id="u_relayed"
            )
            assert (left["reason"], left["node_id"]) == ("ended", relay.node_id)
            late = Peer(relay.url, space)
            token = relay.token("u_late", space, origin=owner.node_id, iat=int(time.time()) - 5)
            status, body, _ = await post_offer(relay.url, space, token, await late.offer())
            await late.close()
            assert (status, json.loads(body)["error"]) == (410, "space_ended")
        finally:
            await asyncio.gather(*(p.close() for p in peers))

    asyncio.run(scenario())


def test_only_a_token_that_places_a_relay_of_this_node_gets_its_feed(
    nodes: tuple[NodeProcess, NodeProcess],
) -> None:
    owner, relay = nodes
    space = "sp_nodes_feed"

    async def scenario() -> None:
        host = Peer(owner.url, space, tone_hz=440)
        try:
            await host.join(owner.token("u_host", space, "host"))
            url = f"{owner.url}/internal/spaces/{space}/feed"
            cases = {
                "no token": (None, 401),
                "a listener's own token": (owner.token("u_x", space), 403),
                "a relay of another node": (relay.token("u_x", space, origin="node-other"), 403),
                "another Space": (relay.token("u_x", "sp_other", origin=owner.node_id), 403),
            }
            async with aiohttp.ClientSession() as http:
                for name, (token, status) in cases.items():
                    headers = {"Authorization": f"Bearer {token}"} if token else {}
                    async with http.get(url, headers=headers) as response:
                        assert response.status == status, name
                good = relay.token("u_x", space, origin=owner.node_id)
                async with http.ws_connect(
                    url, headers={"Authorization": f"Bearer {good}"}
                ) as ws:
                    hello = await ws.receive_json(timeout=5)
                    assert hello["type"] == "feed"
                    assert {"udp_port", "secret", "speaking", "authority"} <= hello.keys()
        finally:
            await host.close()

    asyncio.run(scenario())


def test_the_control_plane_relays_a_full_space_on_another_node(
    aws: Aws, keys: Keys, start_node: Callable[..., NodeProcess]
) -> None:
    """The API's placement reads the registry entries real nodes write: once the
    Space's node lists it as full, the next listener is sent to the other node as a
    relay, with a token both nodes accept, and hears the Space."""
    table = f"parlor-media-nodes-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        **aws.env,
        "NODES_TABLE": table,
        "JOIN_TOKEN_PRIVATE_KEY": keys.private_pem,
        "PYTHONPATH": os.pathsep.join([str(REPO / "functions"), str(REPO)]),
    }

    def control_plane(*args: str) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "tests.media.control_plane", *args],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else None

    control_plane("tables")
    # A node of one worker that sends a Space to one listener: the first fills it.
    started = [start_node(NODES_TABLE=table, WORKER_LISTENERS="1") for _ in range(2)]
    space = "sp_placed_relay"
    control_plane("space", space, "u_host")

    async def scenario() -> None:
        first = await asyncio.to_thread(control_plane, "join", space, "u_first")
        owner = next(n for n in started if n.node_id == first["node_id"])
        other = next(n for n in started if n is not owner)
        host = Peer(owner.url, space, tone_hz=440)
        listener = Peer(first["media"]["url"].split("/media/")[0], space)
        relayed: Peer | None = None
        try:
            await host.join(owner.token("u_host", space, "host"))
            await listener.join(first["token"])
            await asyncio.gather(host.connected(timeout=20), listener.connected(timeout=20))
            deadline = time.monotonic() + 10
            while space not in ((await asyncio.to_thread(owner.registry_item)) or {}).get(
                "full_spaces", []
            ):
                assert time.monotonic() < deadline, "the owner never listed the Space as full"
                await asyncio.sleep(0.2)

            second = await asyncio.to_thread(control_plane, "join", space, "u_second")
            assert second["node_id"] == other.node_id
            claims = jwt.decode(second["token"], options={"verify_signature": False})
            assert (claims["node"], claims["origin"]) == (other.node_id, owner.node_id)
            relayed = Peer(second["media"]["url"].split("/media/")[0], space)
            await relayed.join(second["token"])
            assert relayed.node_id == other.node_id
            await relayed.connected(timeout=20)
            await relayed.hear(440, present=True, timeout=10)
        finally:
            await asyncio.gather(host.close(), listener.close(),
                                 *([relayed.close()] if relayed else []))

    try:
        asyncio.run(scenario())
    finally:
        for node in started:
            node.stop()
