"""Commands from the control plane (the node's SQS queue) and the events the node reports."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from .conftest import MediaEvents, NodeProcess
from .peers import Peer, post_offer

pytestmark = pytest.mark.slow

# The brief's bound, plus the listener's own jitter buffer and the 100 ms analysis
# window that must fill with the new audio before it can show the change.
WITHIN_SECONDS = 1.0


def test_mute_and_unmute_take_effect_within_a_second(node: NodeProcess, space: str) -> None:
    async def scenario() -> None:
        muted = Peer(node.url, space, tone_hz=440)
        other = Peer(node.url, space, tone_hz=660)
        listener = Peer(node.url, space)
        peers = [muted, other, listener]
        try:
            await muted.join(node.token("u_muted", space, "speaker"))
            await other.join(node.token("u_other", space, "host"))
            await listener.join(node.token("u_listener", space))
            await asyncio.gather(*(p.connected() for p in peers))
            await listener.hear(440, present=True)

            sent = time.monotonic()
            await asyncio.to_thread(node.member, space, "u_muted", "speaker", muted=True)
            await listener.hear(440, present=False, timeout=3)
            assert time.monotonic() - sent < WITHIN_SECONDS
            await listener.hear(660, present=True, timeout=0.1)
            await asyncio.gather(*(p.wait_told("muted", user_id="u_muted") for p in peers))

            sent = time.monotonic()
            await asyncio.to_thread(node.member, space, "u_muted", "speaker")
            await listener.hear(440, present=True, timeout=3)
            assert time.monotonic() - sent < WITHIN_SECONDS
            await listener.wait_told("unmuted", user_id="u_muted")
        finally:
            await asyncio.gather(*(p.close() for p in peers))

    asyncio.run(scenario())


def test_a_token_can_admit_a_speaker_muted(node: NodeProcess, space: str) -> None:
    async def scenario() -> None:
        speaker = Peer(node.url, space, tone_hz=440)
        listener = Peer(node.url, space)
        try:
            await speaker.join(node.token("u_speaker", space, "speaker", muted=True))
            await listener.join(node.token("u_listener", space))
            await asyncio.gather(speaker.connected(), listener.connected())
            await asyncio.sleep(0.5)
            await listener.hear(440, present=False, timeout=0.1)
            assert speaker.told("welcome", user_id="u_speaker", muted=True)
            await asyncio.to_thread(node.member, space, "u_speaker", "speaker")
            await listener.hear(440, present=True, timeout=3)
        finally:
            await asyncio.gather(speaker.close(), listener.close())

    asyncio.run(scenario())


def test_role_changes_let_a_listener_speak_and_stop(node: NodeProcess, space: str) -> None:
    async def scenario() -> None:
        # The client offered sendrecv as a listener, so promotion needs no renegotiation.
        promoted = Peer(node.url, space, tone_hz=550)
        listener = Peer(node.url, space)
        try:
            await promoted.join(node.token("u_promoted", space, "listener"))
            await listener.join(node.token("u_listener", space))
            await asyncio.gather(promoted.connected(), listener.connected())
            await asyncio.sleep(0.3)
            await listener.hear(550, present=False, timeout=0.1)

            await asyncio.to_thread(node.member, space, "u_promoted", "speaker")
            took = await listener.hear(550, present=True, timeout=WITHIN_SECONDS + 0.5)
            assert took <= WITHIN_SECONDS + 0.5
            await listener.wait_told("role_changed", user_id="u_promoted", role="speaker")
            assert listener.told("role_changed", user_id="u_promoted", role="speaker")

            await asyncio.to_thread(node.member, space, "u_promoted", "listener")
            took = await listener.hear(550, present=False, timeout=WITHIN_SECONDS + 0.5)
            assert took <= WITHIN_SECONDS + 0.5
            await promoted.wait_told("role_changed", user_id="u_promoted", role="listener")
            assert promoted.told("role_changed", user_id="u_promoted", role="listener")
        finally:
            await asyncio.gather(promoted.close(), listener.close())

    asyncio.run(scenario())


def test_remove_disconnects_only_that_peer_and_events_follow(
    node: NodeProcess, space: str, media_events: MediaEvents
) -> None:
    async def scenario() -> None:
        speaker = Peer(node.url, space, tone_hz=440)
        removed = Peer(node.url, space)
        staying = Peer(node.url, space)
        peers = [speaker, removed, staying]
        try:
            await speaker.join(node.token("u_speaker", space, "host"))
            await removed.join(node.token("u_removed", space))
            await staying.join(node.token("u_staying", space))
            await asyncio.gather(*(p.connected() for p in peers))
            for user, role in (("u_speaker", "host"), ("u_removed", "listener")):
                await media_events.wait_for(
                    type="participant_connected", space_id=space, user_id=user, role=role
                )
            await media_events.wait_for(
                type="speaking_started", space_id=space, user_id="u_speaker"
            )
            await staying.wait_told_speaking("u_speaker")

            await asyncio.to_thread(node.member, space, "u_removed", "removed")
            await removed.wait_closed(timeout=3)
            assert removed.told("removed", user_id="u_removed")
            left = await media_events.wait_for(
                type="participant_left", space_id=space, user_id="u_removed"
            )
            assert left["reason"] == "removed"
            assert left["node_id"] == node.node_id
            assert {"v", "type", "node_id", "space_id", "user_id", "role", "at"} <= left.keys()

            # A token minted before the removal does not bring them back.
            rejoin = Peer(node.url, space)
            token = node.token("u_removed", space, iat=int(time.time()) - 5)
            status, body, _ = await post_offer(node.url, space, token, await rejoin.offer())
            await rejoin.close()
            assert status == 403
            assert json.loads(body)["error"] == "removed"

            await staying.hear(440, present=True, timeout=1)
            assert staying.pc.connectionState == "connected"
            assert speaker.pc.connectionState == "connected"
        finally:
            await asyncio.gather(*(p.close() for p in peers))

    asyncio.run(scenario())


def test_end_closes_every_peer_of_the_space_and_no_other(
    node: NodeProcess, space: str, media_events: MediaEvents
) -> None:
    async def scenario() -> None:
        elsewhere = f"{space}_other"
        host = Peer(node.url, space, tone_hz=440)
        listener = Peer(node.url, space)
        bystander = Peer(node.url, elsewhere)
        peers = [host, listener, bystander]
        try:
            await host.join(node.token("u_host", space, "host"))
            await listener.join(node.token("u_listener", space))
            await bystander.join(node.token("u_bystander", elsewhere))
            await asyncio.gather(*(p.connected() for p in peers))

            await asyncio.to_thread(node.command, type="end", space_id=space)
            await asyncio.gather(host.wait_closed(timeout=3), listener.wait_closed(timeout=3))
            assert host.told("space_ended")
            assert listener.told("space_ended")
            for user in ("u_host", "u_listener"):
                left = await media_events.wait_for(
                    type="participant_left", space_id=space, user_id=user
                )
                assert left["reason"] == "ended"
            await media_events.wait_for(type="speaking_stopped", space_id=space, user_id="u_host")
            assert bystander.pc.connectionState == "connected"
            assert not bystander.told("space_ended")

            # Tokens minted before the end cannot reopen the Space.
            late = Peer(node.url, space)
            token = node.token("u_late", space, iat=int(time.time()) - 5)
            status, body, _ = await post_offer(node.url, space, token, await late.offer())
            await late.close()
            assert status == 410
            assert json.loads(body)["error"] == "space_ended"
        finally:
            await asyncio.gather(*(p.close() for p in peers))

    asyncio.run(scenario())
