"""`python -m media_node`: the node's supervisor and its workers (supervisor.py) serve
until SIGTERM, then drain and leave cleanly."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from . import logs
from .config import Config, ConfigError
from .hls_config import HlsSettings
from .ice import DISCOVER_ON_ECS, discover_ecs_public_address, ecs_private_address
from .identity import NODE_ID_FROM_AWS
from .supervisor import main as supervisor

log = logging.getLogger("media_node")


async def addresses(config: Config) -> Config:
    """ANNOUNCED_ADDRESS=ecs, PRIVATE_URL=ecs: the task's addresses, learned once here
    and handed to the workers as plain values."""
    wanted = DISCOVER_ON_ECS in (config.announced_address, config.private_url)
    metadata_uri = os.environ.get("ECS_CONTAINER_METADATA_URI_V4")
    if wanted and not metadata_uri:
        raise ConfigError("ANNOUNCED_ADDRESS=ecs or PRIVATE_URL=ecs need "
                          "ECS_CONTAINER_METADATA_URI_V4 (Fargate)")
    if config.announced_address == DISCOVER_ON_ECS:
        assert metadata_uri is not None
        address = await discover_ecs_public_address(metadata_uri, boto3.client("ec2"))
        log.info("announcing the task's public address", extra={"address": address})
        config = dataclasses.replace(config, announced_address=address)
    if config.private_url == DISCOVER_ON_ECS:
        assert metadata_uri is not None
        private = await ecs_private_address(metadata_uri)
        config = dataclasses.replace(config, private_url=f"http://{private}:{config.port}")
    return config


async def run(config: Config) -> None:
    await supervisor.serve(await addresses(config))


def identity(config: Config) -> Config:
    """NODE_ID=aws: the node takes its AWS principal id as its own (see config.py)."""
    if config.node_id != NODE_ID_FROM_AWS:
        return config
    try:
        principal = boto3.client("sts").get_caller_identity()["UserId"]
    except (BotoCoreError, ClientError) as exc:
        raise ConfigError(f"NODE_ID=aws, but the node's AWS identity is unknown: {exc}") from exc
    return config.with_node_id(principal)


def main() -> int:
    try:
        config = identity(Config.from_env())
        HlsSettings.from_env()  # the workers read it; a bad value stops the node here
    except ConfigError as exc:
        print(f"media_node: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.node_id)
    try:
        asyncio.run(run(config))
    except Exception:
        log.exception("media node failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
