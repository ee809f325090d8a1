"""A node on ECS: scale-in protection while it holds rooms, and a drain as soon as the
task's metadata says ECS is stopping it, which tells clients to join elsewhere.

The ECS agent and the task metadata endpoint are a real HTTP server of the test's,
which the node is pointed at the way Fargate points it (ECS_AGENT_URI,
ECS_CONTAINER_METADATA_URI_V4)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

from .conftest import NodeProcess, free_port
from .peers import Peer

pytestmark = pytest.mark.slow


class FakeEcs:
    """The agent's task-protection endpoint and the task metadata, on loopback."""

    def __init__(self) -> None:
        self.port = free_port()
        self.protection: list[dict[str, Any]] = []
        self.desired = "RUNNING"
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        threading.Thread(target=self._serve, daemon=True, name="fake-ecs").start()
        assert self._started.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()

        async def protect(request: web.Request) -> web.Response:
            self.protection.append(await request.json())
            return web.json_response({"protection": {"ProtectionEnabled": True}})

        async def task(_: web.Request) -> web.Response:
            return web.json_response({"DesiredStatus": self.desired,
                                      "KnownStatus": "RUNNING"})

        app.router.add_put("/agent/task-protection/v1/state", protect)
        app.router.add_get("/meta/task", task)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._started.set()
        self._loop.run_forever()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)

    def states(self) -> list[bool]:
        return [bool(p["ProtectionEnabled"]) for p in self.protection]


@pytest.fixture
def ecs() -> Iterator[FakeEcs]:
    fake = FakeEcs()
    yield fake
    fake.stop()


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_node_holding_rooms_is_protected_and_a_stop_drains_it(
    start_node: Callable[..., NodeProcess], ecs: FakeEcs, space: str,
) -> None:
    node = start_node(ECS_AGENT_URI=f"{ecs.url}/agent",
                      ECS_CONTAINER_METADATA_URI_V4=f"{ecs.url}/meta",
                      DRAIN_TIMEOUT_SECONDS="30")
    _until(lambda: ecs.states() == [False], 10, "no protection asked for an empty node")

    async def scenario() -> None:
        first = [Peer(node.url, space, tone_hz=440), Peer(node.url, space)]
        host, listener = Peer(node.url, space, tone_hz=440), Peer(node.url, space)
        try:
            await first[0].join(node.token("u_host", space, "host"))
            await first[1].join(node.token("u_listener", space))
            await asyncio.gather(*(p.connected() for p in first))
            await asyncio.to_thread(_until, lambda: ecs.states()[-1:] == [True], 10,
                                    "a node with a room was not protected")
            # Empty again, the node may be scaled in.
            await asyncio.gather(*(p.leave() for p in first))
            await asyncio.to_thread(_until, lambda: ecs.states()[-1:] == [False], 10,
                                    "an empty node kept its protection")

            await host.join(node.token("u_host", space, "host"))
            await listener.join(node.token("u_listener", space))
            await asyncio.gather(host.connected(), listener.connected())
            await asyncio.to_thread(_until, lambda: ecs.states()[-1:] == [True], 10,
                                    "the node was not protected again")
            # ECS begins to stop the task (a deploy): before any SIGTERM the node drains
            # and tells its clients to join again elsewhere.
            ecs.desired = "STOPPED"
            await listener.wait_told("rejoin", reason="draining", timeout=10)
            await host.wait_told("rejoin", reason="draining", timeout=1)
            item = await asyncio.to_thread(node.registry_item)
            assert item is None or item["draining"] is True
            # The clients leave; the empty node stops without waiting out the drain.
            await asyncio.gather(host.leave(), listener.leave())
        finally:
            await asyncio.gather(*(p.close() for p in (*first, host, listener)))

    asyncio.run(scenario())
    assert node.process.wait(timeout=20) == 0
    assert any("ECS is stopping the task" in json.dumps(line) for line in node.log_lines())
