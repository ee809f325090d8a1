"""Signaling: who gets in, what errors look like, leaving, renegotiating, data channels."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .conftest import MediaEvents, NodeProcess
from .peers import Peer, post_offer

pytestmark = pytest.mark.slow


async def refused(
    node: NodeProcess, space: str, token: str | None, sdp: str, **kw: str
) -> tuple[int, dict[str, str]]:
    status, body, headers = await post_offer(node.url, space, token, sdp, **kw)
    assert headers["Content-Type"].startswith("application/json")
    error = json.loads(body)
    assert set(error) == {"error", "message"}
    return status, error


def test_join_tokens_are_checked(node: NodeProcess, space: str) -> None:
    async def scenario() -> None:
        peer = Peer(node.url, space)
        offer = await peer.offer()
        try:
            cases = {
                "missing": (None, 401, "missing_token"),
                "garbage": ("not-a-jwt", 401, "invalid_token"),
                "expired": (node.token("u", space, lifetime=-60), 401, "token_expired"),
                "other key": (
                    node.token("u", space, key=Ed25519PrivateKey.generate()),
                    401,
                    "invalid_token",
                ),
                "other audience": (
                    node.token("u", space, aud="someone-else"),
                    401,
                    "invalid_token",
                ),
                "other issuer": (node.token("u", space, iss="mallory"), 401, "invalid_token"),
                "unknown role": (node.token("u", space, role="admin"), 401, "invalid_token"),
                "other space": (node.token("u", "sp_other"), 403, "wrong_space"),
                "other node": (node.token("u", space, node="node-elsewhere"), 403, "wrong_node"),
            }
            for name, (token, status, code) in cases.items():
                got_status, error = await refused(node, space, token, offer)
                assert (got_status, error["error"]) == (status, code), name

            token = node.token("u_once", space)
            await peer.join(token, sdp=offer)
            again = Peer(node.url, space)
            status, error = await refused(node, space, token, await again.offer())
            assert (status, error["error"]) == (401, "token_reused")
            await again.close()
        finally:
            await peer.close()

    asyncio.run(scenario())


def test_bad_offers_are_refused_and_the_node_keeps_serving(node: NodeProcess, space: str) -> None:
    async def scenario() -> None:
        speaker = Peer(node.url, space, tone_hz=440)
        listener = Peer(node.url, space)
        try:
            await speaker.join(node.token("u_speaker", space, "speaker"))
            await listener.join(node.token("u_listener", space))
            await asyncio.gather(speaker.connected(), listener.connected())

            video = Peer(node.url, space)
            video.pc.addTransceiver("video", direction="recvonly")
            video_offer = await video.offer()
            await video.close()
            truncated = (await Peer(node.url, space).offer())[:200]
            bad = {
                "empty": ("", "invalid_sdp"),
                "garbage": ("hello, node", "invalid_sdp"),
                "truncated": (truncated, "invalid_sdp"),
                "binary": ("\x00\xff" * 64, "invalid_sdp"),
                "video": (video_offer, "unsupported_offer"),
            }
            for name, (sdp, code) in bad.items():
                status, error = await refused(node, space, node.token("u_bad", space), sdp)
                assert (status, error["error"]) == (400, code), name
            status, error = await refused(
                node, space, node.token("u_bad", space), "v=0", content_type="text/plain"
            )
            assert status == 415

            await listener.hear(440, present=True, timeout=1)
            late = Peer(node.url, space)
            await late.join(node.token("u_late", space))
            await late.connected()
            await late.hear(440, present=True)
            await late.close()
        finally:
            await asyncio.gather(speaker.close(), listener.close())

    asyncio.run(scenario())


def test_delete_leaves_and_reports(
    node: NodeProcess, space: str, media_events: MediaEvents
) -> None:
    async def scenario() -> None:
        peer = Peer(node.url, space)
        try:
            await peer.join(node.token("u_leaving", space))
            await peer.connected()
            assert peer.location is not None
            async with aiohttp.ClientSession(node.url) as http:
                async with http.delete(peer.location) as response:
                    assert response.status == 204
                async with http.delete(peer.location) as response:
                    assert response.status == 404
                    assert (await response.json())["error"] == "unknown_session"
            await media_events.wait_for(
                type="participant_left", space_id=space, user_id="u_leaving", reason="left"
            )
            assert space not in json.dumps(node.health())
        finally:
            await peer.close()

    asyncio.run(scenario())


def test_patch_renegotiates_a_promoted_listener(node: NodeProcess, space: str) -> None:
    async def scenario() -> None:
        promoted = Peer(node.url, space)
        listener = Peer(node.url, space)
        try:
            await promoted.join(node.token("u_promoted", space))
            await listener.join(node.token("u_listener", space))
            await asyncio.gather(promoted.connected(), listener.connected())
            await asyncio.to_thread(node.member, space, "u_promoted", "speaker")
            await promoted.wait_told("role_changed", user_id="u_promoted", role="speaker")

            assert await promoted.publish(550) == 200
            await listener.hear(550, present=True)
        finally:
            await asyncio.gather(promoted.close(), listener.close())

    asyncio.run(scenario())


def test_reactions_reach_everyone_at_a_limited_rate(node: NodeProcess, space: str) -> None:
    async def scenario() -> None:
        fan = Peer(node.url, space)
        host = Peer(node.url, space, tone_hz=440)
        try:
            await fan.join(node.token("u_fan", space))
            await host.join(node.token("u_host", space, "host"))
            await asyncio.gather(fan.connected(), host.connected())
            for _ in range(8):
                fan.channel.send(json.dumps({"type": "reaction", "emoji": "🔥"}))
            fan.channel.send(json.dumps({"type": "reaction", "emoji": "x" * 100}))
            fan.channel.send("not json")
            await host.wait_told("reaction", user_id="u_fan", emoji="🔥")
            await asyncio.sleep(0.5)
            for peer in (fan, host):
                reactions = [m for m in peer.messages if m["type"] == "reaction"]
                assert reactions == [{"type": "reaction", "user_id": "u_fan", "emoji": "🔥"}] * 5
        finally:
            await asyncio.gather(fan.close(), host.close())

    asyncio.run(scenario())


def test_health_and_welcome(node: NodeProcess, space: str) -> None:
    async def scenario() -> None:
        peer = Peer(node.url, space)
        try:
            await peer.join(node.token("u_welcome", space, "co_host", muted=True))
            await peer.connected()
            welcome = next(m for m in peer.messages if m["type"] == "welcome")
            assert welcome["user_id"] == "u_welcome"
            assert welcome["role"] == "co_host"
            assert welcome["muted"] is True
            health = await asyncio.to_thread(node.health)
            assert health["node_id"] == node.node_id
            assert health["draining"] is False
            assert health["rooms"] >= 1
            assert health["participants"] >= 1
        finally:
            await peer.close()

    asyncio.run(scenario())
