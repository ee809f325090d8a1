"""Room state converges under faults, under `make up` with its real processes: an `end`
and a `remove` whose commands could not be sent still take effect, a Space whose host
vanished ends after the configured time, and the Spaces of a killed media node end and
leave the bar."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.localrun import LocalRun
from tests.media.peers import Peer

pytestmark = pytest.mark.slow

ABANDONED_SECONDS = 4
# A Space whose commands were all lost converges within this (the node reconciles).
CONVERGES_SECONDS = 15


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    run = LocalRun.prepare(tmp_path_factory.mktemp("converging"))
    run.env.update({"ABANDONED_SPACE_SECONDS": str(ABANDONED_SECONDS),
                    "PARLOR_SWEEP_SECONDS": "1"})
    run.start()
    try:
        yield run
    finally:
        run.kill()


def _space(local: LocalRun, host: str = "u-alice") -> str:
    status, space = local.call("POST", "/spaces", host, {"title": "Converging"})
    assert status == 201, space
    return str(space["space_id"])


async def _joined(local: LocalRun, user: str, space_id: str, tone: float | None = None) -> Peer:
    status, joined = await asyncio.to_thread(
        local.call, "POST", f"/spaces/{space_id}/join", user)
    assert status == 200, joined
    peer = Peer(joined["media"]["url"].split("/media/")[0], space_id, tone_hz=tone)
    await peer.join(joined["token"])
    await peer.connected(timeout=20)
    return peer


def _aws(local: LocalRun) -> dict[str, Any]:
    return {"endpoint_url": f"http://127.0.0.1:{local.port('AWS')}", "region_name": "us-east-1",
            "aws_access_key_id": "local", "aws_secret_access_key": "local"}


def _lose_the_nodes_commands(local: LocalRun) -> None:
    """The node's command queue goes: every command sent to it fails."""
    sqs = boto3.client("sqs", **_aws(local))
    for url in sqs.list_queues(QueueNamePrefix="parlor-media-node-").get("QueueUrls", []):
        sqs.delete_queue(QueueUrl=url)


def _state(local: LocalRun, space_id: str) -> str:
    status, space = local.call("GET", f"/spaces/{space_id}", "u-alice")
    assert status == 200, space
    return str(space["state"])


def test_a_lost_remove_and_a_lost_end_take_effect(local: LocalRun) -> None:
    space_id = _space(local)

    async def scenario() -> None:
        host = await _joined(local, "u-alice", space_id, tone=440)
        bob = await _joined(local, "u-bob", space_id)
        carol = await _joined(local, "u-carol", space_id)
        try:
            await bob.hear(440, present=True, timeout=10)
            _lose_the_nodes_commands(local)
            status, _ = await asyncio.to_thread(
                local.call, "POST", f"/spaces/{space_id}/members/u-bob/remove", "u-alice")
            assert status == 200
            await bob.wait_closed(timeout=CONVERGES_SECONDS)
            assert bob.told("removed", user_id="u-bob")
            assert carol.pc.connectionState == "connected"

            status, _ = await asyncio.to_thread(
                local.call, "POST", f"/spaces/{space_id}/end", "u-alice")
            assert status == 200
            await asyncio.gather(host.wait_closed(timeout=CONVERGES_SECONDS),
                                 carol.wait_closed(timeout=CONVERGES_SECONDS))
            assert carol.told("space_ended")
        finally:
            await asyncio.gather(host.close(), bob.close(), carol.close())

    asyncio.run(scenario())
    failures = boto3.client("sqs", **_aws(local))
    url = failures.get_queue_url(QueueName="parlor-command-failures")["QueueUrl"]
    described = failures.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
        "Messages", [])
    # The commands that could not be sent are described on the on-failure queue.
    assert described, "no failed command batch was described"


def test_a_space_whose_host_vanished_ends_after_the_configured_time(local: LocalRun) -> None:
    space_id = _space(local, "u-alice")

    async def scenario() -> None:
        host = await _joined(local, "u-alice", space_id, tone=440)
        time.sleep(ABANDONED_SECONDS + 2)
        assert _state(local, space_id) == "live"
        # The host's connection goes without a word (no DELETE of the session).
        vanished = time.monotonic()
        await host.pc.close()
        while _state(local, space_id) != "ended":
            assert time.monotonic() - vanished < ABANDONED_SECONDS + 15
            await asyncio.sleep(0.5)
        assert time.monotonic() - vanished >= ABANDONED_SECONDS - 1

    asyncio.run(scenario())


def _node_pids(local: LocalRun) -> list[int]:
    url = f"http://127.0.0.1:{local.port('MEDIA')}/health"
    with urllib.request.urlopen(url, timeout=5) as response:
        health = json.load(response)
    return [health["pid"], *(w["pid"] for w in health["workers"])]


def test_the_spaces_of_a_killed_node_end_and_leave_the_bar(local: LocalRun) -> None:
    """Last in the module: the node stays dead (in AWS, ECS would start another)."""
    space_id = _space(local, "u-alice")

    async def scenario() -> None:
        host = await _joined(local, "u-alice", space_id, tone=440)
        deadline = time.monotonic() + 20
        while space_id not in [i["space"]["space_id"] for i in
                               local.call("GET", "/me/timeline/spaces", "u-bob")[1]["items"]]:
            assert time.monotonic() < deadline, "the Space never reached bob's bar"
            await asyncio.sleep(0.5)
        for pid in _node_pids(local):
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        try:
            while _state(local, space_id) != "ended":
                assert time.monotonic() - killed < 60, "the Space of the dead node never ended"
                await asyncio.sleep(1)
            status, bar = local.call("GET", "/me/timeline/spaces", "u-bob")
            assert status == 200
            assert space_id not in [i["space"]["space_id"] for i in bar["items"]]
        finally:
            await host.close()

    asyncio.run(scenario())
    assert "The media node node-local exited with -9" in local.log_path.read_text()
    status, _ = local.call("GET", "/me/eligibility", "u-alice")
    assert status == 200
