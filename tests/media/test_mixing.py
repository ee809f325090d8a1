"""What listeners and speakers hear: one mix for listeners, mix-minus for speakers."""

from __future__ import annotations

import asyncio

import pytest

from peer.tones import peak_hz, tone_level

from .conftest import NodeProcess
from .peers import Peer

pytestmark = pytest.mark.slow


def test_listener_hears_the_speakers_tone(node: NodeProcess, space: str) -> None:
    async def scenario() -> None:
        speaker = Peer(node.url, space, tone_hz=440)
        listener = Peer(node.url, space)
        try:
            await speaker.join(node.token("u_speaker", space, "host"))
            await listener.join(node.token("u_listener", space, "listener"))
            await asyncio.gather(speaker.connected(), listener.connected())
            await listener.hear(440, present=True)
            await asyncio.sleep(0.5)
            heard = listener.recent(0.5)
            assert abs(peak_hz(heard) - 440) <= 4
        finally:
            await asyncio.gather(speaker.close(), listener.close())

    asyncio.run(scenario())


def test_listeners_hear_everyone_and_speakers_hear_only_the_others(
    node: NodeProcess, space: str
) -> None:
    async def scenario() -> None:
        low = Peer(node.url, space, tone_hz=440)
        high = Peer(node.url, space, tone_hz=660)
        listener = Peer(node.url, space)
        peers = [low, high, listener]
        try:
            await low.join(node.token("u_low", space, "host"))
            await high.join(node.token("u_high", space, "speaker"))
            await listener.join(node.token("u_listener", space))
            await asyncio.gather(*(p.connected() for p in peers))
            await listener.hear(440, present=True)
            await listener.hear(660, present=True)
            await low.hear(660, present=True)
            await high.hear(440, present=True)
            await asyncio.sleep(0.5)

            mix = listener.recent(0.5)
            assert tone_level(mix, 440) > 0.1
            assert tone_level(mix, 660) > 0.1
            # Mix-minus is an exact subtraction before encoding: what is left of a
            # speaker's own voice is codec noise, far below the other speaker's.
            for peer, own, other in ((low, 440, 660), (high, 660, 440)):
                heard = peer.recent(0.5)
                assert tone_level(heard, other) > 0.1
                assert tone_level(heard, own) < tone_level(heard, other) / 30
        finally:
            await asyncio.gather(*(p.close() for p in peers))

    asyncio.run(scenario())


def test_a_listeners_published_audio_never_reaches_the_mix(node: NodeProcess, space: str) -> None:
    async def scenario() -> None:
        speaker = Peer(node.url, space, tone_hz=440)
        sneaky = Peer(node.url, space, tone_hz=550)
        listener = Peer(node.url, space)
        peers = [speaker, sneaky, listener]
        try:
            await speaker.join(node.token("u_speaker", space, "speaker"))
            await sneaky.join(node.token("u_sneaky", space, "listener"))
            await listener.join(node.token("u_listener", space, "listener"))
            await asyncio.gather(*(p.connected() for p in peers))
            await listener.hear(440, present=True)
            await asyncio.sleep(1.0)
            for peer in (listener, speaker, sneaky):
                assert tone_level(peer.recent(1.0), 550) < 0.005
            assert tone_level(sneaky.recent(1.0), 440) > 0.1
        finally:
            await asyncio.gather(*(p.close() for p in peers))

    asyncio.run(scenario())
