"""The node's supervisor: `python -m media_node` runs it, and it runs the workers.

The GIL lets one Python process use one core, so a node runs one worker process per
CPU (`WORKERS`), each a whole aiortc media worker (worker.py). The supervisor owns what
is per node: the public signaling port (front.py), the registry heartbeat and the
command queue (commands go to every worker: those without the Space only remember an
`end` or `remove`), the `node_draining` event and the metrics, both for the workers
together; and draining on SIGTERM. A worker that dies is started again on the same
socket; its rooms and their peers died with it (clients see their connection fail and
rejoin through the API, which may place the Space here again, on any worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import boto3
from aiohttp import web

from .. import commands
from ..config import Config
from ..events import SQS_CLIENT_CONFIG, MediaEvents
from ..internal import COMMANDS_PATH, INBOUND_PATH
from ..metrics import Counters, MetricsReporter
from .ecs_task import TaskProtection, watch_for_stop
from .front import Front, Peers, listener_target
from .queue import CommandQueue
from .registry import Registry
from .workers import WorkerProcess, worker_env

log = logging.getLogger("media_node.supervisor")

STATUS_SECONDS = 1.0
# Waits before starting a dead worker again: none the first time (its listeners rejoin
# two seconds later, and a worker takes about that long to start), longer for each death
# that follows soon after the last (a crash loop).
RESTART_BACKOFF_SECONDS = (0.0, 1.0, 2.0, 5.0, 10.0, 30.0)
# A worker that ran this long before dying starts again without waiting.
STABLE_SECONDS = 60.0
# Past the workers' own drain timeout, how long to wait before killing them.
EXIT_GRACE_SECONDS = 15.0


class RestartBackoff:
    """How long a worker that died waits before it starts again."""

    def __init__(self) -> None:
        self.deaths_in_a_row = 0

    def delay(self, ran_seconds: float) -> float:
        if ran_seconds > STABLE_SECONDS:
            self.deaths_in_a_row = 0
        delay = RESTART_BACKOFF_SECONDS[min(self.deaths_in_a_row, len(RESTART_BACKOFF_SECONDS) - 1)]
        self.deaths_in_a_row += 1
        return delay


class Supervisor:
    def __init__(self, config: Config, table: Any, events: MediaEvents) -> None:
        self.config = config
        self.node_id = config.node_id
        self.events = events
        secret = secrets.token_urlsafe(32)
        self.workers = [WorkerProcess.bind(index, secret) for index in range(config.workers)]
        self.front = Front(
            config, self.workers, Peers(table), self.participant_count, self.health, self._placed
        )
        self.on_full_change: Callable[[], None] = lambda: None
        self._full: list[str] = []
        self._http: aiohttp.ClientSession | None = None
        self._watchers: list[asyncio.Task[None]] = []

    # -- what the registry, the metrics and /health read ---------------------------------

    @property
    def draining(self) -> bool:
        return self.front.draining

    def _ready(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.ready]

    def room_count(self) -> int:
        return len(set().union(*(w.spaces() for w in self._ready())))

    def participant_count(self) -> int:
        return sum(w.participants() for w in self._ready())

    def cpu_seconds(self) -> float:
        return time.process_time() + sum(w.cpu_seconds() for w in self.workers)

    @property
    def counters(self) -> Counters:
        # The supervisor's own events (node_draining, worker_lost) count too.
        return sum((w.totals() for w in self.workers), self.events.counters)

    async def _rtcp(self) -> list[dict[str, float]]:
        async def one(worker: WorkerProcess) -> dict[str, float] | None:
            try:
                async with self.http.get(worker.url + INBOUND_PATH, headers=worker.headers) as r:
                    body = await r.json()
                    return {name: float(body[name])
                            for name in ("received", "lost", "reports", "fraction_lost")}
            except (aiohttp.ClientError, TimeoutError, KeyError, ValueError, TypeError):
                return None

        found = await asyncio.gather(*(one(w) for w in self._ready()))
        return [f for f in found if f is not None]

    async def inbound_totals(self) -> tuple[int, int]:
        totals = await self._rtcp()
        return int(sum(t["received"] for t in totals)), int(sum(t["lost"] for t in totals))

    async def outbound_totals(self) -> tuple[int, float]:
        totals = await self._rtcp()
        reporting = [t for t in totals if t["reports"]]
        loss = sum(t["fraction_lost"] for t in reporting) / len(reporting) if reporting else 0.0
        return int(sum(t["reports"] for t in totals)), loss

    def full_spaces(self) -> list[str]:
        """Spaces here that take no more listeners: the control plane relays them elsewhere."""
        spaces = set().union(*(w.spaces() for w in self._ready()))
        limit = self.config.worker_listeners
        return sorted(s for s in spaces if listener_target(s, self.workers, limit) is None)

    def relayed_spaces(self) -> list[str]:
        """Spaces this node relays for other nodes."""
        return sorted({s for w in self._ready() for s, view in w.rooms.items() if view.origin})

    def health(self) -> dict[str, Any]:
        return {
            "status": "draining" if self.draining else "ok",
            "node_id": self.node_id,
            "pid": os.getpid(),
            "rooms": self.room_count(),
            "participants": self.participant_count(),
            "capacity": self.config.capacity,
            "draining": self.draining,
            "workers": [
                {
                    "index": w.index,
                    "pid": w.pid,
                    "ready": w.ready,
                    "rooms": len(w.spaces()),
                    "participants": w.participants(),
                }
                for w in self.workers
            ],
        }

    def _placed(self) -> None:
        full = self.full_spaces()
        if full != self._full:
            self._full = full
            self.on_full_change()

    # -- the workers --------------------------------------------------------------------

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "the supervisor's client session opens in start()"
        return self._http

    async def start(self) -> None:
        """Every worker started and answering."""
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        config = self.config
        env = worker_env(
            os.environ,
            NODE_ID=config.node_id,
            ANNOUNCED_ADDRESS=config.announced_address,
            PRIVATE_URL=config.private_url,
        )
        await asyncio.gather(*(w.start(env, self.http) for w in self.workers))
        self._watchers = [
            asyncio.create_task(self._watch(w, env), name=f"watch-{w.index}") for w in self.workers
        ]

    async def _watch(self, worker: WorkerProcess, env: dict[str, str]) -> None:
        """Restart a worker that dies, until the node drains (then an exit is the end)."""
        backoff = RestartBackoff()
        while True:
            assert worker.process is not None
            started = time.monotonic()
            code = await worker.process.wait()
            lost = worker.died()
            self._placed()
            self._report_lost(worker, lost)
            if self.draining:
                log.info("worker exited", extra={"worker": worker.index, "code": code})
                return
            delay = backoff.delay(time.monotonic() - started)
            log.error(
                "worker died: its rooms are gone; restarting it",
                extra={"worker": worker.index, "code": code, "delay": delay},
            )
            await asyncio.sleep(delay)
            if self.draining:
                return
            try:
                await worker.start(env, self.http)
            except (RuntimeError, OSError):
                log.exception("worker did not restart", extra={"worker": worker.index})

    def _report_lost(self, worker: WorkerProcess, lost: list[tuple[str, str, str, str]]) -> None:
        """The sessions a dead worker held left with it: the control plane hears so
        (`participant_left`, reason `worker_lost`), so that presence is right; their
        clients join again, which any worker of the node (or another node) takes."""
        for space_id, session_id, user_id, role in lost:
            self.events.publish("participant_left", space_id=space_id, user_id=user_id,
                                role=role, session_id=session_id, reason="worker_lost")
        if lost:
            log.warning("a dead worker's sessions reported lost",
                        extra={"worker": worker.index, "sessions": len(lost)})

    async def poll(self) -> None:
        while True:
            await asyncio.gather(*(w.poll(self.http) for w in self._ready()))
            self._placed()
            await asyncio.sleep(STATUS_SECONDS)

    async def apply(self, command: dict[str, Any]) -> None:
        """A command from the queue, to every worker; raises if one did not take it, so
        the queue delivers it again (applying a command twice changes nothing). The
        front remembers it too: a worker restarted after it would know nothing of it."""
        commands.remember(self.front.book, command)

        async def one(worker: WorkerProcess) -> None:
            async with self.http.post(
                worker.url + COMMANDS_PATH, json=command, headers=worker.headers
            ) as response:
                if response.status != 204:
                    raise RuntimeError(f"worker {worker.index}: {response.status}")

        await asyncio.gather(*(one(w) for w in self._ready()))

    # -- draining -----------------------------------------------------------------------

    def start_draining(self) -> None:
        """No new Space here; each worker drains its rooms (SIGTERM)."""
        self.front.draining = True
        self.events.publish("node_draining")
        for worker in self.workers:
            worker.signal()

    async def drained(self, hurry: asyncio.Event) -> None:
        """Every worker has exited; `hurry` (a second signal) makes them close at once."""
        deadline = self.config.drain_timeout_seconds + EXIT_GRACE_SECONDS
        done = asyncio.gather(*self._watchers)
        hurried = asyncio.create_task(hurry.wait())
        either: set[asyncio.Future[Any]] = {done, hurried}
        await asyncio.wait(either, timeout=deadline, return_when=asyncio.FIRST_COMPLETED)
        if hurry.is_set() and not done.done():
            for worker in self.workers:
                worker.signal()
            await asyncio.wait({done}, timeout=EXIT_GRACE_SECONDS)
        hurried.cancel()
        if not done.done():
            log.error("workers did not exit: killing them")
            for worker in self.workers:
                worker.kill()
            await done

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        for worker in self.workers:
            worker.listening.close()


async def serve(config: Config) -> None:
    loop = asyncio.get_running_loop()
    sqs = boto3.client("sqs")
    table = boto3.resource("dynamodb").Table(config.nodes_table)
    events = MediaEvents(boto3.client("sqs", config=SQS_CLIENT_CONFIG),
                         config.media_events_queue_url, config.node_id)
    queue = CommandQueue(sqs, config.command_queue_name, config.node_id)
    await asyncio.to_thread(queue.create)
    events.start()

    supervisor = Supervisor(config, table, events)
    await supervisor.start()
    runner = web.AppRunner(supervisor.front.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.host, config.port).start()

    drain = asyncio.Event()
    hurry = asyncio.Event()

    def on_signal(signum: int) -> None:
        # The first signal drains; a second one (an impatient operator) stops at once.
        if drain.is_set():
            log.info("second signal: closing rooms now", extra={"signal": signum})
            hurry.set()
        else:
            log.info("signal: draining", extra={"signal": signum})
            drain.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    registry = Registry(table, supervisor, queue.url)
    supervisor.on_full_change = registry.wake.set
    reporter = MetricsReporter(supervisor, config.metrics_seconds, config.metrics_stack)
    background = [
        asyncio.create_task(registry.run(config.heartbeat_seconds), name="heartbeat"),
        asyncio.create_task(reporter.run(), name="metrics"),
        asyncio.create_task(supervisor.poll(), name="status"),
    ]
    # On ECS: no scale-in takes a node that holds rooms, and a stop drains it before
    # SIGTERM (ecs_task.py). Fargate sets both variables.
    agent_uri = os.environ.get("ECS_AGENT_URI")
    if agent_uri:
        protection = TaskProtection(agent_uri)
        background.append(asyncio.create_task(
            protection.run(lambda: supervisor.room_count() > 0), name="task-protection"))
    metadata_uri = os.environ.get("ECS_CONTAINER_METADATA_URI_V4")
    if metadata_uri:
        background.append(asyncio.create_task(
            watch_for_stop(metadata_uri, drain.set), name="task-stop"))
    queue.start(supervisor.apply, loop)
    log.info(
        "media node serving",
        extra={
            "url": config.public_url,
            "private_url": config.private_url,
            "port": config.port,
            "capacity": config.capacity,
            "workers": config.workers,
            "worker_listeners": config.worker_listeners,
        },
    )

    await drain.wait()
    # The registry says so before the workers tell their clients to join again, so that
    # the API places them elsewhere rather than here.
    supervisor.front.draining = True
    with contextlib.suppress(Exception):
        await registry.beat()
    supervisor.start_draining()
    await supervisor.drained(hurry)

    for task in background:
        task.cancel()
    # The counts of the last, partial interval are worth as much as the others.
    with contextlib.suppress(Exception):
        await reporter.report()
    queue.stop()
    await runner.cleanup()
    await supervisor.close()
    try:
        await registry.remove()
        await asyncio.to_thread(queue.delete)
    except Exception:
        log.exception("could not remove the registry entry or the command queue")
    await events.close()
    log.info("media node stopped")
