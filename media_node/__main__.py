"""`python -m media_node`: serve until SIGTERM, then drain and leave cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys

import boto3
from aiohttp import web

from . import logs
from .certificate import share_one_certificate
from .commands import CommandQueue
from .config import Config, ConfigError
from .events import MediaEvents
from .ice import DISCOVER_ON_ECS, discover_ecs_public_address
from .metrics import MetricsReporter
from .node import Node
from .registry import Registry
from .signaling import Signaling

log = logging.getLogger("media_node")


async def announced_address(config: Config) -> Config:
    if config.announced_address != DISCOVER_ON_ECS:
        return config
    metadata_uri = os.environ.get("ECS_CONTAINER_METADATA_URI_V4")
    if not metadata_uri:
        raise ConfigError("ANNOUNCED_ADDRESS=ecs needs ECS_CONTAINER_METADATA_URI_V4 (Fargate)")
    address = await discover_ecs_public_address(metadata_uri, boto3.client("ec2"))
    log.info("announcing the task's public address", extra={"address": address})
    return dataclasses.replace(config, announced_address=address)


async def serve(config: Config) -> None:
    loop = asyncio.get_running_loop()
    config = await announced_address(config)
    sqs = boto3.client("sqs")
    table = boto3.resource("dynamodb").Table(config.nodes_table)

    share_one_certificate()
    events = MediaEvents(sqs, config.media_events_queue_url, config.node_id)
    node = Node(config, events)
    commands = CommandQueue(sqs, config.command_queue_name)
    await asyncio.to_thread(commands.create)
    events.start()

    runner = web.AppRunner(Signaling(node).app(), access_log=None)
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

    registry = Registry(table, node, commands.url)
    reporter = MetricsReporter(node, config.metrics_seconds)
    background = [
        asyncio.create_task(registry.run(config.heartbeat_seconds), name="heartbeat"),
        asyncio.create_task(reporter.run(), name="metrics"),
    ]
    commands.start(node, loop)
    log.info(
        "media node serving",
        extra={"url": config.public_url, "port": config.port, "capacity": config.capacity},
    )

    await drain.wait()
    node.start_draining()
    # Tell the control plane now rather than at the next heartbeat: place no Space here.
    with contextlib.suppress(Exception):
        await registry.beat()
    emptied = asyncio.create_task(node.wait_until_empty(config.drain_timeout_seconds))
    hurried = asyncio.create_task(hurry.wait())
    await asyncio.wait({emptied, hurried}, return_when=asyncio.FIRST_COMPLETED)
    hurried.cancel()
    emptied.cancel()
    if node.rooms:
        log.info("drain over: closing the remaining rooms", extra={"rooms": node.room_count()})
        await node.close_all_rooms()

    for task in background:
        task.cancel()
    # The counts of the last, partial interval are worth as much as the others.
    with contextlib.suppress(Exception):
        await reporter.report()
    commands.stop()
    await runner.cleanup()
    try:
        await registry.remove()
        await asyncio.to_thread(commands.delete)
    except Exception:
        log.exception("could not remove the registry entry or the command queue")
    await events.close()
    log.info("media node stopped")


def main() -> int:
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"media_node: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.node_id)
    try:
        asyncio.run(serve(config))
    except Exception:
        log.exception("media node failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
