"""A node of several worker processes: Spaces placed across them, one use of a token per
node, SIGTERM draining them all, and a worker that dies."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from peer.tones import peak_hz, tone_level

from .conftest import MediaEvents, NodeProcess
from .peers import Peer, post_offer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pair(start_node: Callable[..., NodeProcess]) -> Iterator[NodeProcess]:
    """A node of two workers, shared by this module's tests (Spaces of their own)."""
    node = start_node(WORKERS="2")
    yield node
    node.stop()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def test_two_spaces_go_to_different_workers_and_both_are_heard(pair: NodeProcess) -> None:
    first, second = "sp_workers_a", "sp_workers_b"

    async def scenario() -> None:
        host_a = Peer(pair.url, first, tone_hz=440)
        host_b = Peer(pair.url, second, tone_hz=660)
        listener_a = Peer(pair.url, first)
        listener_b = Peer(pair.url, second)
        peers = [host_a, host_b, listener_a, listener_b]
        try:
            await host_a.join(pair.token("u_host_a", first, "host"))
            await host_b.join(pair.token("u_host_b", second, "host"))
            await listener_a.join(pair.token("u_listener_a", first))
            await listener_b.join(pair.token("u_listener_b", second))
            # Each Space went to the least loaded worker: one each.
            assert host_a.worker != host_b.worker
            assert listener_a.worker == host_a.worker
            assert listener_b.worker == host_b.worker
            await asyncio.gather(*(p.connected(timeout=20) for p in peers))
            await listener_a.hear(440, present=True, timeout=10)
            await listener_b.hear(660, present=True, timeout=10)
            await asyncio.sleep(0.5)
            assert abs(peak_hz(listener_a.recent(0.5)) - 440) <= 4
            assert abs(peak_hz(listener_b.recent(0.5)) - 660) <= 4
            assert tone_level(listener_a.recent(0.5), 660) < 0.005
            health = await asyncio.to_thread(pair.health)
            assert [w["rooms"] for w in health["workers"]] == [1, 1]
            assert health["rooms"] == 2
            assert health["participants"] == 4
        finally:
            await asyncio.gather(*(p.close() for p in peers))

    asyncio.run(scenario())


def test_a_worker_that_dies_is_restarted_and_its_spaces_can_be_joined_again(
    pair: NodeProcess,
) -> None:
    space = "sp_workers_phoenix"

    async def scenario() -> None:
        host = Peer(pair.url, space, tone_hz=440)
        listener = Peer(pair.url, space)
        try:
            await host.join(pair.token("u_host", space, "host"))
            await listener.join(pair.token("u_listener", space))
            await asyncio.gather(host.connected(timeout=20), listener.connected(timeout=20))
            pids = await asyncio.to_thread(pair.worker_pids)
            dead = pids[host.worker]
            os.kill(dead, signal.SIGKILL)

            def restarted() -> bool:
                workers = pair.health()["workers"]
                worker = workers[host.worker]
                return bool(worker["ready"]) and worker["pid"] not in (dead, None)

            await _wait(restarted, 30, "the worker to be restarted")
            assert not _pid_alive(dead)
            health = await asyncio.to_thread(pair.health)
            assert health["workers"][host.worker]["rooms"] == 0, "its rooms died with it"
            # Clients rejoin (through the API, with new tokens): the Space opens again.
            await asyncio.gather(host.close(), listener.close())
            host = Peer(pair.url, space, tone_hz=440)
            listener = Peer(pair.url, space)
            await host.join(pair.token("u_host", space, "host"))
            await listener.join(pair.token("u_listener", space))
            await asyncio.gather(host.connected(timeout=20), listener.connected(timeout=20))
            await listener.hear(440, present=True, timeout=10)
        finally:
            await asyncio.gather(host.close(), listener.close())

    asyncio.run(scenario())


def test_tokens_minted_before_end_or_remove_stay_refused_after_the_workers_restart(
    pair: NodeProcess,
) -> None:
    """A restarted worker remembers nothing, and a token lives about a minute: one minted
    before an `end` (or a `remove`) must not open the Space (or bring the user back)
    through it. The front tells the restarted worker what it was told."""
    kept, ended = "sp_workers_refuse_kept", "sp_workers_refuse_ended"
    before = int(time.time()) - 5

    async def scenario() -> None:
        host = Peer(pair.url, kept, tone_hz=440)
        gone = Peer(pair.url, kept)
        other = Peer(pair.url, ended, tone_hz=660)
        late = [Peer(pair.url, kept), Peer(pair.url, ended), Peer(pair.url, kept)]
        try:
            await host.join(pair.token("u_host", kept, "host"))
            await gone.join(pair.token("u_gone", kept))
            await other.join(pair.token("u_other", ended, "host"))
            await asyncio.gather(*(p.connected(timeout=20) for p in (host, gone, other)))
            await asyncio.to_thread(pair.member, kept, "u_gone", "removed")
            await asyncio.to_thread(pair.command, type="end", space_id=ended)
            await asyncio.gather(gone.wait_closed(timeout=10), other.wait_closed(timeout=10))

            pids = await asyncio.to_thread(pair.worker_pids)
            for pid in pids:
                os.kill(pid, signal.SIGKILL)

            def restarted() -> bool:
                workers = pair.health()["workers"]
                return all(w["ready"] and w["pid"] not in pids for w in workers)

            await _wait(restarted, 30, "the workers to be restarted")
            for peer, space, token, refusal in (
                (late[0], kept, pair.token("u_gone", kept, iat=before), (403, "removed")),
                (late[1], ended, pair.token("u_late", ended, iat=before), (410, "space_ended")),
            ):
                status, body, _ = await post_offer(pair.url, space, token, await peer.offer())
                assert status == refusal[0], f"{space}: {status}, the restarted worker admitted it"
                assert json.loads(body)["error"] == refusal[1]
            # Removal is final: the control plane mints no later token for them, and a
            # forged later version changes nothing either.
            token = pair.token("u_gone", kept, ver=time.time_ns() // 1000 + 10**9)
            status, body, _ = await post_offer(pair.url, kept, token, await late[2].offer())
            assert (status, json.loads(body)["error"]) == (403, "removed")
        finally:
            await asyncio.gather(*(p.close() for p in (host, gone, other, *late)))

    asyncio.run(scenario())


def test_sigterm_drains_every_worker_then_the_node_leaves(
    start_node: Callable[..., NodeProcess], media_events: MediaEvents
) -> None:
    node = start_node(WORKERS="2", DRAIN_TIMEOUT_SECONDS="60")
    first, second = "sp_drain_a", "sp_drain_b"

    async def scenario() -> None:
        hosts = [Peer(node.url, first, tone_hz=440), Peer(node.url, second, tone_hz=660)]
        listeners = [Peer(node.url, first), Peer(node.url, second)]
        peers = hosts + listeners
        try:
            for space, host, listener in zip((first, second), hosts, listeners, strict=True):
                await host.join(node.token(f"u_host_{space}", space, "host"))
                await listener.join(node.token(f"u_listener_{space}", space))
            assert hosts[0].worker != hosts[1].worker
            await asyncio.gather(*(p.connected(timeout=20) for p in peers))
            pids = await asyncio.to_thread(node.worker_pids)

            node.process.terminate()
            await _wait(lambda: (node.registry_item() or {}).get("draining") is True, 5, "draining")
            await media_events.wait_for(type="node_draining", node_id=node.node_id)
            # Both workers' rooms go on while the node drains.
            await listeners[0].hear(440, present=True, timeout=5)
            await listeners[1].hear(660, present=True, timeout=5)
            newcomer = Peer(node.url, "sp_drain_new")
            status, body, _ = await post_offer(
                node.url, "sp_drain_new", node.token("u_new", "sp_drain_new"),
                await newcomer.offer(),
            )
            await newcomer.close()
            assert (status, json.loads(body)["error"]) == (503, "draining")

            await asyncio.to_thread(node.command, type="end", space_id=first)
            await listeners[0].wait_closed(timeout=5)
            # Its worker is done; the other goes on with its room.
            first_worker, second_worker = pids[hosts[0].worker], pids[hosts[1].worker]
            await _wait(lambda: not _pid_alive(first_worker), 10, "the first worker to exit")
            assert _pid_alive(second_worker)
            await listeners[1].hear(660, present=True, timeout=5)
            await asyncio.to_thread(node.command, type="end", space_id=second)
            await listeners[1].wait_closed(timeout=5)
            await _wait(lambda: not any(_pid_alive(pid) for pid in pids), 15, "workers to exit")
        finally:
            await asyncio.gather(*(p.close() for p in peers))

    asyncio.run(scenario())
    assert node.process.wait(timeout=15) == 0
    assert node.registry_item() is None
