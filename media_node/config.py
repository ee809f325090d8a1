"""The node's configuration, read from environment variables only."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from .candidates import CandidatePolicy, Network, parse_networks
from .ice import DISCOVER_ON_ECS

SQS_NAME_MAX = 80
# Listeners of one Space a worker sends to before more workers relay it: well under
# the fast path's measured listeners per core (docs/performance.md), leaving the rest
# of the core for the mix, the speakers' decoding and the DTLS handshakes of joins.
DEFAULT_WORKER_LISTENERS = 800
MAX_RECONCILE_SECONDS = 10.0


class ConfigError(ValueError):
    """A variable is missing or malformed; the node refuses to start."""


@dataclass(frozen=True)
class Config:
    node_id: str
    host: str
    port: int
    public_url: str
    # How other nodes reach this one inside the VPC (signaling forwarded, relay feeds).
    private_url: str
    announced_address: str | None
    # A PEM or a JSON key set (tokens.py); may be empty when read from the secret.
    join_token_public_key: str
    nodes_table: str
    media_events_queue_url: str | None
    command_queue_prefix: str
    capacity: int
    heartbeat_seconds: float
    drain_timeout_seconds: float
    metrics_seconds: float
    # How rooms send: `fast`, or a benchmark's baseline as module:Class (audio/senders.py).
    room_sender: str = "fast"
    workers: int = 1
    worker_listeners: int = DEFAULT_WORKER_LISTENERS
    # Worker i's peers all use UDP port udp_port + i (0: a free port per worker).
    udp_port: int = 0
    # The control plane's tables, read to reconcile the node's rooms (reconcile.py);
    # without them a node goes by commands and join tokens alone.
    spaces_table: str | None = None
    members_table: str | None = None
    reconcile_seconds: float = 5.0
    # The deployment the node's metrics belong to (a dimension of each).
    metrics_stack: str = "parlor"
    # Where the public key set is (read again on a token under an unknown key id).
    join_token_public_key_secret_arn: str | None = None
    # Clients' candidates the node never sends checks to (candidates.py): its own
    # private networks, but for the deployment's own TURN relays in them.
    private_networks: tuple[Network, ...] = ()
    trusted_relay_networks: tuple[Network, ...] = ()

    @property
    def candidate_policy(self) -> CandidatePolicy:
        return CandidatePolicy(self.private_networks, self.trusted_relay_networks)

    @property
    def command_queue_name(self) -> str:
        # SQS names take letters, digits, hyphens and underscores; a principal id has a
        # colon between the role id and the session name.
        return self.command_queue_prefix + re.sub(r"[^A-Za-z0-9_-]", "-", self.node_id)

    def with_node_id(self, node_id: str) -> Config:
        """This configuration for the id learned at start (NODE_ID=aws)."""
        config = dataclasses.replace(self, node_id=node_id)
        if len(config.command_queue_name) > SQS_NAME_MAX:
            raise ConfigError("COMMAND_QUEUE_PREFIX + NODE_ID exceed SQS's 80-character name")
        return config

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        key = env.get("JOIN_TOKEN_PUBLIC_KEY", "").strip()
        key_secret_arn = env.get("JOIN_TOKEN_PUBLIC_KEY_SECRET_ARN") or None
        if not key and key_secret_arn is None:
            raise ConfigError("JOIN_TOKEN_PUBLIC_KEY (PEM or key set) or "
                              "JOIN_TOKEN_PUBLIC_KEY_SECRET_ARN is required to admit anyone")
        node_id = env.get("NODE_ID") or f"node-{secrets.token_hex(4)}"
        if not re.fullmatch(r"[A-Za-z0-9_.:@=,-]{1,128}", node_id):
            raise ConfigError(f"NODE_ID may use letters, digits and _.:@=,- only: {node_id!r}")
        host = env.get("HOST", "0.0.0.0")
        port = _int(env, "PORT", 8700, minimum=1)
        public_url = env.get("PUBLIC_URL") or f"http://127.0.0.1:{port}"
        private_url = env.get("PRIVATE_URL") or f"http://127.0.0.1:{port}"
        if private_url != DISCOVER_ON_ECS and not re.match(r"https?://", private_url):
            raise ConfigError(f"PRIVATE_URL must be an http(s) URL or {DISCOVER_ON_ECS!r}")
        prefix = env.get("COMMAND_QUEUE_PREFIX", "parlor-media-node-")
        if len(prefix + node_id) > SQS_NAME_MAX:
            raise ConfigError("COMMAND_QUEUE_PREFIX + NODE_ID exceed SQS's 80-character name")
        announced = env.get("ANNOUNCED_ADDRESS") or None
        if announced is not None and announced != DISCOVER_ON_ECS:
            try:
                ipaddress.ip_address(announced)
            except ValueError:
                raise ConfigError(
                    f"ANNOUNCED_ADDRESS must be an IP address or {DISCOVER_ON_ECS!r}: {announced!r}"
                ) from None
        room_sender = env.get("ROOM_SENDER") or "fast"
        if room_sender != "fast" and not re.fullmatch(r"[\w.]+:\w+", room_sender):
            raise ConfigError(f"ROOM_SENDER must be 'fast' or module:Class, got {room_sender!r}")
        udp_port = _int(env, "UDP_PORT", 0, minimum=0)
        workers = _int(env, "WORKERS", len(os.sched_getaffinity(0)), minimum=1)
        if udp_port and not 1024 <= udp_port <= 65536 - workers:
            raise ConfigError(
                f"UDP_PORT must leave room for {workers} workers' ports in 1024-65535, "
                f"got {udp_port}"
            )
        try:
            private_networks = parse_networks(env.get("PRIVATE_NETWORKS", ""), "PRIVATE_NETWORKS")
            trusted_relays = parse_networks(env.get("TRUSTED_RELAY_NETWORKS", ""),
                                            "TRUSTED_RELAY_NETWORKS")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return cls(
            node_id=node_id,
            host=host,
            port=port,
            public_url=public_url.rstrip("/"),
            private_url=private_url.rstrip("/"),
            announced_address=announced,
            join_token_public_key=key,
            nodes_table=env.get("NODES_TABLE", "parlor-media-nodes"),
            media_events_queue_url=env.get("MEDIA_EVENTS_QUEUE_URL") or None,
            command_queue_prefix=prefix,
            capacity=_int(env, "CAPACITY", 500, minimum=1),
            # Often enough that placement, which trusts a heartbeat for 6 s, stops sending
            # joins to a dead node within 6 s (docs/decisions/004-failover-timing.md).
            heartbeat_seconds=_float(env, "HEARTBEAT_SECONDS", 2.0),
            # Fargate kills a task 120 s (its longest stopTimeout) after SIGTERM.
            drain_timeout_seconds=_float(env, "DRAIN_TIMEOUT_SECONDS", 110.0),
            metrics_seconds=_float(env, "METRICS_SECONDS", 60.0),
            room_sender=room_sender,
            workers=workers,
            worker_listeners=_int(env, "WORKER_LISTENERS", DEFAULT_WORKER_LISTENERS, minimum=1),
            udp_port=udp_port,
            spaces_table=env.get("SPACES_TABLE") or None,
            members_table=env.get("MEMBERS_TABLE") or None,
            reconcile_seconds=_reconcile_seconds(env),
            metrics_stack=env.get("METRICS_STACK") or "parlor",
            join_token_public_key_secret_arn=key_secret_arn,
            private_networks=private_networks,
            trusted_relay_networks=trusted_relays,
        )


def _reconcile_seconds(env: Mapping[str, str]) -> float:
    seconds = _float(env, "RECONCILE_SECONDS", 5.0)
    # A Space whose every command was lost must converge within 15 s.
    if seconds > MAX_RECONCILE_SECONDS:
        raise ConfigError(f"RECONCILE_SECONDS must be at most {MAX_RECONCILE_SECONDS:g}, "
                          f"got {seconds:g}")
    return seconds


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value
