"""Limits under concurrent requests, through the API served over HTTP.

The API runs as its own process (Chalice's local server: a thread per request, like
concurrent Lambda invocations) against the embedded AWS; the test fires requests from
many threads at once and then checks the limits held."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier
from typing import Any

import boto3
import pytest

from local.aws import EmbeddedAws, create_tables
from tests.conftest import ISSUER

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Http:
    def __init__(self, base: str) -> None:
        self.base = base

    def call(self, method: str, path: str, user: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base + path, data=data, method=method,
            headers={"Authorization": f"Bearer {ISSUER.mint(user)}",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")


@pytest.fixture(scope="module")
def http() -> Iterator[Http]:
    aws = EmbeddedAws().start()
    env = {**os.environ, "AWS_ENDPOINT_URL": aws.url, "HOSTING_FOLLOWER_THRESHOLD": "0"}
    previous = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = aws.url
    create_tables(aws.url)
    queue = boto3.client("sqs", endpoint_url=aws.url).create_queue(QueueName="cmd-node-a")
    boto3.client("dynamodb", endpoint_url=aws.url).put_item(
        TableName="parlor-media-nodes",
        Item={"node_id": {"S": "node-a"}, "url": {"S": "http://node-a.test:8700"},
              "command_queue_url": {"S": queue["QueueUrl"]}, "capacity": {"N": "1000"},
              "participants": {"N": "0"}, "rooms": {"N": "0"}, "cpu": {"N": "0"},
              "heartbeat_at": {"N": str(time.time() + 3600)}, "draining": {"BOOL": False}})
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "local.api", "--port", str(port)], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = Http(f"http://127.0.0.1:{port}")
    try:
        deadline = time.time() + 30
        while True:
            try:
                client.call("GET", "/spaces/live", "u-probe")
                break
            except OSError:
                if time.time() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        yield client
    finally:
        process.terminate()
        process.wait(timeout=10)
        aws.stop()
        if previous is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = previous


def _together(count: int, action: Any) -> list[tuple[int, Any]]:
    """Runs `action(i)` in `count` threads released at the same instant."""
    barrier = Barrier(count)

    def run(i: int) -> tuple[int, Any]:
        barrier.wait()
        return action(i)  # type: ignore[no-any-return]

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def test_thirty_two_concurrent_approvals_seat_exactly_ten_speakers(http: Http) -> None:
    http.call("PUT", "/me", "u-host", {"handle": "host", "display_name": "Host"})
    status, space = http.call("POST", "/spaces", "u-host", {"title": "Crowded"})
    assert status == 201, space
    space_id = space["space_id"]
    listeners = [f"u-l{i:02d}" for i in range(32)]
    for user in listeners:
        assert http.call("POST", f"/spaces/{space_id}/join", user)[0] == 200
        assert http.call("POST", f"/spaces/{space_id}/requests", user)[0] == 200
    results = _together(len(listeners), lambda i: http.call(
        "POST", f"/spaces/{space_id}/requests/{listeners[i]}/approve", "u-host"))
    outcomes = Counter(status for status, _ in results)
    assert outcomes == {200: 10, 409: 22}, results
    assert {body["error"] for status, body in results if status == 409} == {"speaker_limit"}
    _, detail = http.call("GET", f"/spaces/{space_id}", "u-host")
    speakers = [m for m in detail["stage"] if m["role"] == "speaker"]
    assert len(speakers) == 10
    assert detail["speaker_count"] == 10
    assert detail["listener_count"] == 22


def test_concurrent_follows_keep_the_count_exact(http: Http) -> None:
    http.call("PUT", "/me", "u-star", {"handle": "star", "display_name": "Star"})
    fans = [f"u-f{i:02d}" for i in range(30)]
    for fan in fans:
        http.call("PUT", "/me", fan, {"handle": fan[2:], "display_name": fan})
    # Everyone follows twice at once: the count must still be one per fan.
    results = _together(60, lambda i: http.call("PUT", "/users/u-star/follow", fans[i % 30]))
    assert {status for status, _ in results} == {200}
    _, star = http.call("GET", "/users/u-star", "u-star")
    assert star["follower_count"] == 30


def test_concurrent_go_live_keeps_one_live_space_per_host(http: Http) -> None:
    http.call("PUT", "/me", "u-eager", {"handle": "eager", "display_name": "Eager"})
    results = _together(12, lambda i: http.call("POST", "/spaces", "u-eager",
                                                {"title": f"Attempt {i}"}))
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 1, 409: 11}, results
