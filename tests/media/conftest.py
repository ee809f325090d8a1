"""Fixtures for the media node tests: an embedded AWS (moto), signing keys, a live node."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import ifaddr
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from moto.server import ThreadedMotoServer

from .fakes import FakePeer

REPO = Path(__file__).resolve().parents[2]
NODES_TABLE = "parlor-media-nodes-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def interface_address() -> str | None:
    """This machine's first non-loopback IPv4 address: where aioice binds its sockets."""
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith("127."):
                return ip.ip
    return None


@dataclass
class Aws:
    endpoint: str
    env: dict[str, str]
    events_queue_url: str

    def sqs(self) -> Any:
        return boto3.client("sqs", endpoint_url=self.endpoint, region_name="us-east-1")

    def table(self, name: str = NODES_TABLE) -> Any:
        dynamodb = boto3.resource("dynamodb", endpoint_url=self.endpoint, region_name="us-east-1")
        return dynamodb.Table(name)

    def principal(self) -> str:
        """The `aws:userid` the node's credentials have (NODE_ID=aws)."""
        sts = boto3.client("sts", endpoint_url=self.endpoint, region_name="us-east-1",
                           aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                           aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])
        return str(sts.get_caller_identity()["UserId"])


RECONCILE_TABLES = ("SPACES_TABLE", "MEMBERS_TABLE")


@pytest.fixture(scope="package")
def aws() -> Iterator[Aws]:
    # moto's server logs every request of the node's heartbeats and long polls.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # Only the node's environment points at this server: os.environ stays as it is, so
    # other test packages' in-process moto mocks are not redirected here.
    env = {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": endpoint,
    }
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    dynamodb.create_table(
        TableName=NODES_TABLE,
        KeySchema=[{"AttributeName": "node_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "node_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="parlor-media-events-test")["QueueUrl"]
    yield Aws(endpoint=endpoint, env=env, events_queue_url=queue_url)
    server.stop()


@dataclass
class Keys:
    private: Ed25519PrivateKey
    public_pem: str

    @property
    def private_pem(self) -> str:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()


@pytest.fixture(scope="package")
def keys() -> Keys:
    private = Ed25519PrivateKey.generate()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return Keys(private=private, public_pem=public_pem)


@dataclass
class NodeProcess:
    node_id: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    aws: Aws
    _keys: Keys
    table: str = NODES_TABLE

    def token(
        self,
        user: str,
        space: str,
        role: str = "listener",
        *,
        node: str | None = None,
        muted: bool = False,
        lifetime: float = 60,
        key: Ed25519PrivateKey | None = None,
        **overrides: Any,
    ) -> str:
        now = time.time()
        claims = {
            "iss": "parlor-control-plane",
            "aud": "parlor-media",
            "sub": user,
            "space": space,
            "role": role,
            "node": node or self.node_id,
            "muted": muted,
            "iat": int(now),
            "exp": int(now + lifetime),
            "jti": uuid.uuid4().hex,
            **overrides,
        }
        return jwt.encode(claims, key or self._keys.private, algorithm="EdDSA")

    def registry_item(self) -> dict[str, Any] | None:
        item: dict[str, Any] | None = (
            self.aws.table(self.table)
            .get_item(Key={"node_id": self.node_id}, ConsistentRead=True)
            .get("Item")
        )
        return item

    def command(self, **command: Any) -> None:
        item = self.registry_item()
        assert item is not None, "the node is not in the registry"
        body = {"v": 2, "command_id": uuid.uuid4().hex, "issued_at": time.time(), **command}
        self.aws.sqs().send_message(
            QueueUrl=item["command_queue_url"], MessageBody=json.dumps(body)
        )

    def member(self, space: str, user: str, role: str, *, muted: bool = False,
               version: int | None = None) -> int:
        """A member command, as the control plane's dispatcher sends it: the user's
        whole authority at a version (now, unless given). Returns the version."""
        version = version if version is not None else time.time_ns() // 1000
        self.command(type="member", space_id=space, user_id=user, role=role, muted=muted,
                     version=version)
        return version

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
            result: dict[str, Any] = json.load(response)
        return result

    def worker_pids(self) -> list[int]:
        return [worker["pid"] for worker in self.health()["workers"]]

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                lines.append({"raw": line})
        return lines

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="package")
def start_node(aws: Aws, keys: Keys) -> Iterator[Callable[..., NodeProcess]]:
    """Start `python -m media_node` (the Dockerfile's entry point) with env config."""
    started: list[NodeProcess] = []
    logs = Path(tempfile.mkdtemp(prefix="media-node-logs-"))

    def start(**env_overrides: str) -> NodeProcess:
        port = free_port()
        node_id = f"node-test-{uuid.uuid4().hex[:6]}"
        if env_overrides.get("NODE_ID") == "aws":
            node_id = aws.principal()
        env = {
            # A node reconciles when SPACES_TABLE and MEMBERS_TABLE are set: only the
            # tests that ask for it (test_authority.py), whatever this process holds.
            **{k: v for k, v in os.environ.items() if k not in RECONCILE_TABLES},
            **aws.env,
            "NODE_ID": node_id,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "PUBLIC_URL": f"http://127.0.0.1:{port}",
            "JOIN_TOKEN_PUBLIC_KEY": keys.public_pem,
            "NODES_TABLE": NODES_TABLE,
            "MEDIA_EVENTS_QUEUE_URL": aws.events_queue_url,
            "HEARTBEAT_SECONDS": "1",
            "METRICS_SECONDS": "1",
            # Teardown must not wait out rooms whose peers never connected.
            "DRAIN_TIMEOUT_SECONDS": "2",
            # One worker unless a test asks for more: the single-worker node of old,
            # behind its supervisor, and the lightest on a shared machine.
            "WORKERS": "1",
            "PYTHONUNBUFFERED": "1",
            **env_overrides,
        }
        # Exercise the announced-address rewrite end to end: announcing the address the
        # sockets are bound on keeps it reachable over loopback.
        address = interface_address()
        if address is not None:
            env.setdefault("ANNOUNCED_ADDRESS", address)
        log_path = logs / f"{node_id.replace(':', '-')}.log"
        with log_path.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "media_node"],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        node = NodeProcess(node_id, f"http://127.0.0.1:{port}", process, log_path, aws, keys,
                           table=env["NODES_TABLE"])
        started.append(node)
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(f"node exited: {log_path.read_text()}")
            try:
                node.health()
                if node.registry_item() is not None:
                    return node
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"node did not start: {log_path.read_text()}")
            time.sleep(0.1)

    yield start
    for node in started:
        node.stop()


@pytest.fixture(scope="package")
def node(start_node: Callable[..., NodeProcess]) -> NodeProcess:
    """One node shared by the tests: each test uses Spaces of its own."""
    return start_node()


@pytest.fixture
def space() -> str:
    return f"sp_{uuid.uuid4().hex[:10]}"


@dataclass
class MediaEvents:
    """Everything the node sent to the media-events queue, read as it arrives."""

    aws: Aws
    seen: list[dict[str, Any]] = field(default_factory=list)

    def poll(self) -> None:
        sqs = self.aws.sqs()
        while True:
            messages = sqs.receive_message(
                QueueUrl=self.aws.events_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                return
            for message in messages:
                self.seen.append(json.loads(message["Body"]))
                sqs.delete_message(
                    QueueUrl=self.aws.events_queue_url, ReceiptHandle=message["ReceiptHandle"]
                )

    def matching(self, **fields: Any) -> list[dict[str, Any]]:
        self.poll()
        return [e for e in self.seen if all(e.get(k) == v for k, v in fields.items())]

    async def wait_for(self, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = await asyncio.to_thread(self.matching, **fields)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no event {fields}; saw {self.seen}")
            await asyncio.sleep(0.1)


@pytest.fixture(scope="package")
def media_events(aws: Aws) -> MediaEvents:
    return MediaEvents(aws)


@pytest.fixture
def fake_peers() -> Iterator[Callable[..., FakePeer]]:
    made: list[FakePeer] = []

    def make(ssrc: int, profile: str = "SRTP_AEAD_AES_256_GCM") -> FakePeer:
        made.append(FakePeer(ssrc, profile))
        return made[-1]

    yield make
    for peer in made:
        peer.close()
