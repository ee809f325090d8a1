"""Spaces larger than one worker: listeners beyond WORKER_LISTENERS are relayed by
another worker, and hear, are told and are moderated as if they were on the owner."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from peer.tones import peak_hz

from .conftest import MediaEvents, NodeProcess
from .peers import Peer, post_offer

pytestmark = pytest.mark.slow

# As for commands on the owner (test_commands.py): the brief's bound.
WITHIN_SECONDS = 1.0
SHARE = 2


@pytest.fixture(scope="module")
def relaying(start_node: Callable[..., NodeProcess]) -> Iterator[NodeProcess]:
    """Two workers, each sending a Space to at most two listeners."""
    node = start_node(WORKERS="2", WORKER_LISTENERS=str(SHARE))
    yield node
    node.stop()


@pytest.fixture
def own_relaying(start_node: Callable[..., NodeProcess]) -> Iterator[NodeProcess]:
    """As `relaying`, for one test: the node-wide counts it reads are its own."""
    node = start_node(WORKERS="2", WORKER_LISTENERS=str(SHARE))
    yield node
    node.stop()


async def _room(
    node: NodeProcess, space: str, relayed: int, speakers: dict[str, float] | None = None
) -> tuple[list[Peer], list[Peer], list[Peer]]:
    """Speakers (host first), the owner worker's share of listeners, then `relayed` more;
    all connected. Asserts where placement put each."""
    speakers = speakers or {"u_host": 440}
    on_stage = []
    for index, (user, hz) in enumerate(speakers.items()):
        peer = Peer(node.url, space, tone_hz=hz)
        await peer.join(node.token(user, space, "host" if index == 0 else "speaker"))
        on_stage.append(peer)
    owner = on_stage[0].worker
    local, remote = [], []
    for index in range(SHARE + relayed):
        peer = Peer(node.url, space)
        await peer.join(node.token(f"u_listener_{index}", space))
        (local if index < SHARE else remote).append(peer)
    assert {p.worker for p in on_stage + local} == {owner}
    assert all(p.worker != owner for p in remote), "beyond the share, listeners are relayed"
    await asyncio.gather(*(p.connected(timeout=20) for p in on_stage + local + remote))
    return on_stage, local, remote


async def _close(*groups: list[Peer]) -> None:
    await asyncio.gather(*(p.close() for group in groups for p in group))


def test_a_relayed_listener_hears_the_speaker_and_the_space_fills_up(
    relaying: NodeProcess, media_events: MediaEvents
) -> None:
    space = "sp_relay_hear"

    async def scenario() -> None:
        stage, local, remote = await _room(relaying, space, relayed=1)
        extra: list[Peer] = []
        try:
            (relayed,) = remote
            await relayed.hear(440, present=True, timeout=10)
            await asyncio.sleep(0.5)
            assert abs(peak_hz(relayed.recent(0.5)) - 440) <= 4
            await relayed.wait_told_speaking("u_host", timeout=10)
            connected = await media_events.wait_for(
                type="participant_connected", space_id=space, user_id="u_listener_2"
            )
            assert (connected["role"], connected["node_id"]) == ("listener", relaying.node_id)
            health = await asyncio.to_thread(relaying.health)
            assert all(w["rooms"] >= 1 for w in health["workers"])

            # The relay's share fills too; then the node takes no more of this Space,
            # and says so in the registry, where the control plane places by it.
            fourth = Peer(relaying.url, space)
            extra.append(fourth)
            await fourth.join(relaying.token("u_listener_3", space))
            assert fourth.worker == relayed.worker

            def listed_full() -> bool:
                item = relaying.registry_item() or {}
                return space in item.get("full_spaces", [])

            deadline = time.monotonic() + 5
            while not await asyncio.to_thread(listed_full):
                assert time.monotonic() < deadline, "the Space is not listed as full"
                await asyncio.sleep(0.2)
            fifth = Peer(relaying.url, space)
            extra.append(fifth)
            status, body, _ = await post_offer(
                relaying.url, space, relaying.token("u_listener_4", space), await fifth.offer()
            )
            assert (status, json.loads(body)["error"]) == (503, "full")
            # Speakers still join: they publish into the owner's mix, whatever its load.
            speaker = Peer(relaying.url, space, tone_hz=550)
            extra.append(speaker)
            await speaker.join(relaying.token("u_late_speaker", space, "speaker"))
            assert speaker.worker == stage[0].worker
            await speaker.connected(timeout=20)
            await relayed.hear(550, present=True, timeout=10)
        finally:
            await _close(stage, local, remote, extra)

    asyncio.run(scenario())


def test_a_token_admits_one_session_even_where_placement_would_send_it_elsewhere(
    relaying: NodeProcess,
) -> None:
    """One use is per node: once the owner's share is taken, a reused token would be
    placed on the relay worker, which never saw it; the node refuses it all the same."""
    space = "sp_relay_once"

    async def scenario() -> None:
        first = Peer(relaying.url, space)
        second = Peer(relaying.url, space)
        again = Peer(relaying.url, space)
        try:
            await first.join(relaying.token("u_first", space))
            token = relaying.token("u_second", space)
            await second.join(token)
            assert second.worker == first.worker
            offer = await again.offer()
            status, body, _ = await post_offer(relaying.url, space, token, offer)
            assert (status, json.loads(body)["error"]) == (401, "token_reused")
            # A request refused for its body does not spend the token.
            fresh = relaying.token("u_third", space)
            status, _, _ = await post_offer(relaying.url, space, fresh, "not sdp")
            assert status == 400
            await again.join(fresh, sdp=offer)
            assert again.worker != first.worker
        finally:
            await asyncio.gather(first.close(), second.close(), again.close())

    asyncio.run(scenario())


def test_joining_again_on_another_worker_replaces_the_earlier_session(
    own_relaying: NodeProcess, media_events: MediaEvents
) -> None:
    """A reload (or another device) replaces a user's session wherever placement puts the
    new one: from the owner to its relay, and back once the owner has a seat again."""
    space = "sp_relay_replace"

    async def scenario() -> None:
        stage, local, remote = await _room(own_relaying, space, relayed=0)
        owner = stage[0].worker
        again = Peer(own_relaying.url, space)
        third = Peer(own_relaying.url, space)
        try:
            first, other = local
            # The owner's share is taken: the same user's new session goes to the relay.
            await again.join(own_relaying.token("u_listener_0", space))
            assert again.worker != owner
            await first.wait_closed(timeout=5)
            left = await media_events.wait_for(
                type="participant_left", space_id=space, user_id="u_listener_0"
            )
            assert left["reason"] == "replaced"
            await again.connected(timeout=20)
            await again.hear(440, present=True, timeout=10)
            assert other.pc.connectionState == "connected"

            # Now the owner has a seat again; once the node has seen it, the user's next
            # session goes there, and the relay's is the one replaced.
            def owner_listeners() -> int:
                worker = next(w for w in own_relaying.health()["workers"] if w["index"] == owner)
                return int(worker["participants"]) - len(stage)

            deadline = time.monotonic() + 5
            while await asyncio.to_thread(owner_listeners) >= SHARE:
                assert time.monotonic() < deadline, "the replaced session's seat stays taken"
                await asyncio.sleep(0.2)
            await third.join(own_relaying.token("u_listener_0", space))
            assert third.worker == owner
            await again.wait_closed(timeout=5)
            await third.connected(timeout=20)
            await third.hear(440, present=True, timeout=10)
            assert other.pc.connectionState == "connected"

            # The node counts the user once (its status is polled once a second).
            def participants() -> int:
                return sum(w["participants"] for w in own_relaying.health()["workers"])

            deadline = time.monotonic() + 3
            while await asyncio.to_thread(participants) != len(stage) + SHARE:
                assert time.monotonic() < deadline, "the node counts a replaced session"
                await asyncio.sleep(0.2)
        finally:
            await asyncio.gather(again.close(), third.close())
            await _close(stage, local, remote)

    asyncio.run(scenario())


def test_two_joins_of_one_user_at_once_leave_one_session(own_relaying: NodeProcess) -> None:
    """A double click, or two tabs opened together: both joins are answered, and the one
    the node took later stays, whichever of the two was answered first."""
    space = "sp_relay_twice"

    async def scenario() -> None:
        host = Peer(own_relaying.url, space, tone_hz=440)
        twins = [Peer(own_relaying.url, space), Peer(own_relaying.url, space)]
        try:
            await host.join(own_relaying.token("u_host", space, "host"))
            await asyncio.gather(*(t.join(own_relaying.token("u_twice", space)) for t in twins))
            await host.connected(timeout=20)

            # The node's count (its status is polled once a second) and the peers' own
            # states: a session closed before ICE completed never connects at its peer.
            def participants() -> int:
                return sum(w["participants"] for w in own_relaying.health()["workers"])

            def connected() -> list[Peer]:
                return [t for t in twins if t.pc.connectionState == "connected"]

            deadline = time.monotonic() + 20
            while len(connected()) != 1 or await asyncio.to_thread(participants) != 2:
                assert time.monotonic() < deadline, (
                    [t.pc.connectionState for t in twins], own_relaying.health()["workers"])
                await asyncio.sleep(0.2)
            (stays,) = connected()
            await stays.hear(440, present=True, timeout=10)
        finally:
            await asyncio.gather(host.close(), *(t.close() for t in twins))

    asyncio.run(scenario())


def test_mute_and_remove_reach_relayed_listeners_within_a_second(
    relaying: NodeProcess, media_events: MediaEvents
) -> None:
    space = "sp_relay_moderate"

    async def scenario() -> None:
        stage, local, remote = await _room(
            relaying, space, relayed=2, speakers={"u_host": 440, "u_speaker": 660}
        )
        try:
            watcher, removed = remote
            await watcher.hear(660, present=True, timeout=10)

            sent = time.monotonic()
            await asyncio.to_thread(relaying.member, space, "u_speaker", "speaker", muted=True)
            await watcher.hear(660, present=False, timeout=3)
            assert time.monotonic() - sent < WITHIN_SECONDS
            await watcher.hear(440, present=True, timeout=0.5)
            await watcher.wait_told("muted", user_id="u_speaker", timeout=1)

            sent = time.monotonic()
            await asyncio.to_thread(relaying.member, space, "u_listener_3", "removed")
            await removed.wait_told("removed", user_id="u_listener_3", timeout=3)
            assert time.monotonic() - sent < WITHIN_SECONDS
            await removed.wait_closed(timeout=3)
            for peer in [*stage, *local, watcher]:
                await peer.wait_told("removed", user_id="u_listener_3", timeout=1)
            left = await media_events.wait_for(
                type="participant_left", space_id=space, user_id="u_listener_3"
            )
            assert left["reason"] == "removed"
            assert watcher.pc.connectionState == "connected"
            await watcher.hear(440, present=True, timeout=1)

            # The relay refuses a token minted before the removal, as the owner would.
            # (Once the node has seen the seat free again: until then it is full.)
            def seat_free() -> bool:
                return space not in (relaying.registry_item() or {}).get("full_spaces", [space])

            deadline = time.monotonic() + 5
            while not await asyncio.to_thread(seat_free):
                assert time.monotonic() < deadline, "the removed listener's seat stays taken"
                await asyncio.sleep(0.2)
            rejoin = Peer(relaying.url, space)
            token = relaying.token("u_listener_3", space, iat=int(time.time()) - 5)
            status, body, _ = await post_offer(relaying.url, space, token, await rejoin.offer())
            await rejoin.close()
            assert (status, json.loads(body)["error"]) == (403, "removed")
        finally:
            await _close(stage, local, remote)

    asyncio.run(scenario())


def test_end_closes_relayed_peers(relaying: NodeProcess, media_events: MediaEvents) -> None:
    space = "sp_relay_end"

    async def scenario() -> None:
        stage, local, remote = await _room(relaying, space, relayed=1)
        try:
            (relayed,) = remote
            await relayed.hear(440, present=True, timeout=10)
            await asyncio.to_thread(relaying.command, type="end", space_id=space)
            await asyncio.gather(*(p.wait_closed(timeout=5) for p in stage + local + remote))
            assert relayed.told("space_ended")
            left = await media_events.wait_for(
                type="participant_left", space_id=space, user_id="u_listener_2"
            )
            assert left["reason"] == "ended"
            health = await asyncio.to_thread(relaying.health)
            assert space not in json.dumps(health)

            late = Peer(relaying.url, space)
            token = relaying.token("u_late", space, iat=int(time.time()) - 5)
            status, body, _ = await post_offer(relaying.url, space, token, await late.offer())
            await late.close()
            assert (status, json.loads(body)["error"]) == (410, "space_ended")
        finally:
            await _close(stage, local, remote)

    asyncio.run(scenario())


def test_reactions_cross_the_relay_both_ways(relaying: NodeProcess) -> None:
    space = "sp_relay_react"

    async def scenario() -> None:
        stage, local, remote = await _room(relaying, space, relayed=2)
        try:
            fan = remote[0]
            for _ in range(8):
                fan.channel.send(json.dumps({"type": "reaction", "emoji": "🔥"}))
            local[0].channel.send(json.dumps({"type": "reaction", "emoji": "👏"}))
            everyone = stage + local + remote
            await asyncio.gather(*(
                p.wait_told("reaction", user_id="u_listener_2", emoji="🔥") for p in everyone
            ))
            await asyncio.gather(*(
                p.wait_told("reaction", user_id="u_listener_0", emoji="👏") for p in everyone
            ))
            await asyncio.sleep(0.5)
            for peer in everyone:
                fire = [m for m in peer.messages if m.get("emoji") == "🔥"]
                assert len(fire) == 5, "the relay keeps the rate limit"
        finally:
            await _close(stage, local, remote)

    asyncio.run(scenario())


def test_a_relayed_listener_made_speaker_rejoins_where_the_mix_is_and_is_heard(
    relaying: NodeProcess,
) -> None:
    space = "sp_relay_promote"

    async def scenario() -> None:
        stage, local, remote = await _room(relaying, space, relayed=2)
        promoted_peer: Peer | None = None
        try:
            promoted, other = remote
            await asyncio.to_thread(relaying.member, space, "u_listener_2", "speaker")
            await promoted.wait_told("rejoin", reason="promoted", role="speaker")
            await other.wait_told("role_changed", user_id="u_listener_2", role="speaker")
            assert not other.told("rejoin")
            # In place of the event: its client must not open a microphone here.
            assert not promoted.told("role_changed")

            # The client leaves the relay and joins again with its new role (a fresh
            # token from the API): speakers are placed where the Space is mixed.
            assert await promoted.leave() == 204
            await promoted.close()
            promoted_peer = Peer(relaying.url, space, tone_hz=550)
            await promoted_peer.join(relaying.token("u_listener_2", space, "speaker"))
            assert promoted_peer.worker == stage[0].worker
            await promoted_peer.connected(timeout=20)
            await other.hear(550, present=True, timeout=10)
            await local[0].hear(550, present=True, timeout=5)
            await stage[0].hear(550, present=True, timeout=5)
            await promoted_peer.hear(440, present=True, timeout=5)
        finally:
            await _close(stage, local, remote, [promoted_peer] if promoted_peer else [])

    asyncio.run(scenario())


def test_relayed_listeners_rejoin_when_the_owner_worker_dies(relaying: NodeProcess) -> None:
    """Last in this module: it kills a worker (the supervisor starts it again)."""
    space = "sp_relay_orphan"

    async def scenario() -> None:
        stage, local, remote = await _room(relaying, space, relayed=1)
        try:
            (relayed,) = remote
            await relayed.hear(440, present=True, timeout=10)
            pids = await asyncio.to_thread(relaying.worker_pids)
            os.kill(pids[stage[0].worker], signal.SIGKILL)
            await relayed.wait_told("rejoin", reason="relay_lost", timeout=10)
            await relayed.wait_closed(timeout=5)
            assert relayed.told("rejoin", reason="relay_lost")
            assert relayed.pc.connectionState in ("closed", "failed")
            # The relay worker itself lives on; only the owner died.
            assert pids[relayed.worker] in await asyncio.to_thread(relaying.worker_pids)
        finally:
            await _close(stage, local, remote)

    asyncio.run(scenario())
