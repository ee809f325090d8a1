"""One worker process of a node (`python -m media_node.worker`), started by its supervisor.

A worker is what a whole node was before there were several: aiortc peers, the rooms
they are in, the mix. It serves HTTP on a loopback socket the supervisor made and
passed to it (`WORKER_FD`), reachable by the node's front only (the worker secret comes
first on its stdin); it publishes its media events itself. The supervisor keeps the
other end of stdin open for the worker's whole life: when it closes, the supervisor is
gone, and the worker closes its rooms and exits rather than run on unsupervised.
Its last status (the counters up to its very end, which the once-a-second poll would
miss) goes down a pipe of its own (`WORKER_STATUS_FD`) as it stops.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Awaitable, Callable

import boto3
from aiohttp import web
from aiohttp.typedefs import Middleware
from aioice.ice import get_host_addresses

from .. import commands, logs
from ..audio.relay import FeedEndpoint, RelayRoom, serve_feed
from ..config import Config, ConfigError
from ..errors import error_response, json_errors
from ..events import SQS_CLIENT_CONFIG, MediaEvents
from ..hls.service import Packaging
from ..internal import (
    COMMANDS_PATH,
    FEED_PATH,
    INBOUND_PATH,
    MAX_SDP_BYTES,
    REPLACED_PATH,
    STATUS_PATH,
    WORKER_SECRET_HEADER,
)
from ..transport.aiortc_seams import share_one_certificate
from ..transport.udp_mux import UdpMux
from .reconcile import ControlPlaneTables, Reconciler
from .rooms import Rooms
from .signaling import Signaling

log = logging.getLogger("media_node.worker")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def only_the_front(secret: str) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get(WORKER_SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            return error_response(403, "forbidden", "workers answer their node's front only")
        return await handler(request)

    return check


class Worker:
    def __init__(self, node: Rooms, endpoint: FeedEndpoint, secret: str) -> None:
        self._node = node
        self._endpoint = endpoint
        self._secret = secret

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[only_the_front(self._secret), json_errors], client_max_size=MAX_SDP_BYTES
        )
        Signaling(self._node).add_routes(app)
        app.router.add_get(STATUS_PATH, self.status)
        app.router.add_get(INBOUND_PATH, self.inbound)
        app.router.add_post(COMMANDS_PATH, self.command)
        app.router.add_get(FEED_PATH, self.feed)
        app.router.add_post(REPLACED_PATH, self.replaced)
        return app

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self._node.status())

    async def inbound(self, request: web.Request) -> web.Response:
        """RTCP-derived totals, both ways. Apart from the status: getStats over every
        peer is too costly to poll often."""
        received, lost = await self._node.inbound_totals()
        reports, fraction_lost = self._node.outbound_totals()
        return web.json_response({"received": received, "lost": lost, "reports": reports,
                                  "fraction_lost": fraction_lost})

    async def command(self, request: web.Request) -> web.Response:
        try:
            command = commands.parse(await request.text())
        except commands.CommandError as exc:
            return error_response(400, "invalid_command", str(exc))
        await self._node.apply_command(command)
        return web.Response(status=204)

    async def replaced(self, request: web.Request) -> web.Response:
        """The user joined the Space again on another worker: their sessions here that
        the front admitted before that join are closed (reason `replaced`)."""
        try:
            body = await request.json()
            user_id, admission = body["user_id"], body["admission"]
            if not isinstance(user_id, str) or type(admission) is not int:
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return error_response(
                400, "invalid_request", "the body must be JSON with user_id and admission"
            )
        room = self._node.rooms.get(request.match_info["space_id"])
        if room is not None:
            await room.replace(user_id, admission)
        return web.Response(status=204)

    async def feed(self, request: web.Request) -> web.StreamResponse:
        space_id = request.match_info["space_id"]
        room = self._node.rooms.get(space_id)
        if room is None or room.closed or isinstance(room, RelayRoom):
            return error_response(404, "unknown_space", "this worker does not mix this Space")
        hello = {"speaking": room.speaking_users(), "authority": self._node.book.of_space(space_id)}
        return await serve_feed(request, room, self._endpoint, hello)


def _read_secret() -> str:
    secret = sys.stdin.readline().strip()
    if not secret:
        raise ConfigError("the worker secret must come first on stdin (from the supervisor)")
    return secret


def _when_the_supervisor_is_gone(loop: asyncio.AbstractEventLoop, gone: Callable[[], None]) -> None:
    def wait() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(gone)

    threading.Thread(target=wait, name="supervisor-watch", daemon=True).start()


async def serve(
    config: Config, index: int, secret: str, listening: socket.socket, last_status: int | None
) -> None:
    loop = asyncio.get_running_loop()
    # Every peer connection of this worker presents the same DTLS certificate.
    share_one_certificate()
    events = MediaEvents(boto3.client("sqs", config=SQS_CLIENT_CONFIG),
                         config.media_events_queue_url, config.node_id)
    events.start()
    node = Rooms(config, events, index)
    node.hls = Packaging.from_env(events)
    reconciling: asyncio.Task[None] | None = None
    if config.spaces_table and config.members_table:
        tables = ControlPlaneTables(boto3.client("dynamodb"), config.spaces_table,
                                    config.members_table)
        node.reconciler = Reconciler(node, tables, config.reconcile_seconds)
        reconciling = asyncio.create_task(node.reconciler.run(), name="reconcile")
    endpoint = await FeedEndpoint.open(config.host)
    # Every peer of this worker on one UDP port per host address (see udp_mux.py).
    mux = node.udp_mux = await UdpMux.open(
        get_host_addresses(use_ipv4=True, use_ipv6=False),
        config.udp_port + index if config.udp_port else 0,
    )
    runner = web.AppRunner(Worker(node, endpoint, secret).app(), access_log=None)
    await runner.setup()
    await web.SockSite(runner, listening).start()

    drain = asyncio.Event()
    hurry = asyncio.Event()

    def on_signal(signum: int) -> None:
        # As the node's: the first drains, a second closes the rooms at once.
        if drain.is_set():
            hurry.set()
        drain.set()
        log.info("signal", extra={"signal": signum, "hurry": hurry.is_set()})

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    def supervisor_gone() -> None:
        log.error("the supervisor is gone: closing the rooms")
        drain.set()
        hurry.set()

    _when_the_supervisor_is_gone(loop, supervisor_gone)
    log.info("worker serving", extra={"feed_port": endpoint.port, "ice": mux.describe()})

    await drain.wait()
    node.start_draining()
    emptied = asyncio.create_task(node.wait_until_empty(config.drain_timeout_seconds))
    hurried = asyncio.create_task(hurry.wait())
    await asyncio.wait({emptied, hurried}, return_when=asyncio.FIRST_COMPLETED)
    hurried.cancel()
    emptied.cancel()
    if node.rooms:
        log.info("drain over: closing the remaining rooms", extra={"rooms": node.room_count()})
        await node.close_all_rooms()
    if reconciling is not None:
        reconciling.cancel()
    await runner.cleanup()
    endpoint.close()
    mux.close()
    if node.hls is not None:
        # The closed rooms' last segments and playlists, before their events go.
        await node.hls.close(node.hls.settings.close_timeout_seconds)
    await events.close()
    if last_status is not None:
        _tell_last_status(last_status, node.status())
    log.info("worker stopped")


def _tell_last_status(fd: int, status: dict[str, object]) -> None:
    """One JSON line the supervisor reads once this process has exited."""
    try:
        with os.fdopen(fd, "w") as pipe:
            pipe.write(json.dumps(status) + "\n")
    except OSError:
        log.exception("could not tell the supervisor the last status")


def main() -> int:
    try:
        config = Config.from_env()
        index = int(os.environ["WORKER_INDEX"])
        listening = socket.socket(fileno=int(os.environ["WORKER_FD"]))
        status_fd = os.environ.get("WORKER_STATUS_FD")
        last_status = int(status_fd) if status_fd is not None else None
        secret = _read_secret()
    except (ConfigError, KeyError, ValueError, OSError) as exc:
        print(f"media_node.worker: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.node_id, worker=index)
    try:
        asyncio.run(serve(config, index, secret, listening, last_status))
    except Exception:
        log.exception("worker failed")
        return 1
    return 0
