"""The node as a service: its registry heartbeat, its metrics, and draining on SIGTERM."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal

import botocore.exceptions
import pytest

from .conftest import MediaEvents, NodeProcess
from .peers import Peer, post_offer

pytestmark = pytest.mark.slow


def test_registry_entry_follows_the_contract_and_beats(node: NodeProcess) -> None:
    first = node.registry_item()
    assert first is not None
    assert first["url"] == node.url
    assert first["command_queue_url"].endswith(node.node_id)
    assert first["capacity"] == 500
    assert first["draining"] is False
    for number in ("rooms", "participants", "cpu", "heartbeat_at", "expires_at"):
        assert isinstance(first[number], Decimal), number
    assert abs(float(first["heartbeat_at"]) - time.time()) < 5
    assert first["expires_at"] > first["heartbeat_at"] + 15

    deadline = time.monotonic() + 5
    while (item := node.registry_item()) and item["heartbeat_at"] == first["heartbeat_at"]:
        assert time.monotonic() < deadline, "no new heartbeat"
        time.sleep(0.2)


def test_a_node_named_by_its_aws_principal_keys_and_tags_what_it_owns_with_it(
    start_node: Callable[..., NodeProcess],
) -> None:
    """NODE_ID=aws, as on Fargate: the registry key and the command queue's tag are the
    node's `aws:userid`, which the stack's IAM conditions compare them with."""
    node = start_node(NODE_ID="aws")
    principal = node.aws.principal()
    item = node.registry_item()
    assert item is not None
    assert item["node_id"] == principal
    queue_url = item["command_queue_url"]
    assert queue_url.endswith("parlor-media-node-" + principal.replace(":", "-"))
    tags = node.aws.sqs().list_queue_tags(QueueUrl=queue_url)["Tags"]
    assert tags == {"parlor-node": principal}
    node.stop()
    assert node.registry_item() is None


async def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def _queue_exists(node: NodeProcess, url: str) -> bool:
    try:
        node.aws.sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    except botocore.exceptions.ClientError:
        return False
    return True


def test_sigterm_drains_until_the_rooms_end_then_leaves(
    start_node: Callable[..., NodeProcess], media_events: MediaEvents, space: str
) -> None:
    node = start_node(DRAIN_TIMEOUT_SECONDS="60")
    queue_url = node.registry_item()["command_queue_url"]  # type: ignore[index]

    async def scenario() -> list[tuple[float, bytes]]:
        speaker = Peer(node.url, space, tone_hz=440)
        listener = Peer(node.url, space)
        try:
            await speaker.join(node.token("u_speaker", space, "host"))
            await listener.join(node.token("u_listener", space))
            heard = listener.record_rtp()
            await asyncio.gather(speaker.connected(), listener.connected())

            node.process.terminate()
            await _wait(lambda: (node.registry_item() or {}).get("draining") is True, 3, "draining")
            await media_events.wait_for(type="node_draining", node_id=node.node_id)
            assert (await asyncio.to_thread(node.health))["draining"] is True

            newcomer = Peer(node.url, f"{space}_new")
            status, body, _ = await post_offer(
                node.url,
                f"{space}_new",
                node.token("u_new", f"{space}_new"),
                await newcomer.offer(),
            )
            await newcomer.close()
            assert status == 503
            assert '"draining"' in body

            # The open Space goes on, and even takes a newcomer.
            late = Peer(node.url, space)
            await late.join(node.token("u_late", space))
            await late.connected()
            await late.hear(440, present=True)
            await late.close()
            await listener.hear(440, present=True, timeout=1)

            await asyncio.to_thread(node.command, type="end", space_id=space)
            await listener.wait_closed()
            return heard
        finally:
            await asyncio.gather(speaker.close(), listener.close())

    heard = asyncio.run(scenario())
    assert node.process.wait(timeout=10) == 0
    assert node.registry_item() is None
    assert not _queue_exists(node, queue_url)

    metrics = [line for line in node.log_lines() if "_aws" in line]
    assert metrics, "no embedded-metric-format lines"
    names = {m["Name"] for m in metrics[-1]["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"Participants", "PacketsIn", "PacketsOut", "InboundLossPercent", "CpuPercent"} <= names
    # Every metric is the stack's, so two deployments in one account stay apart.
    assert metrics[-1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
        ["Service", "Stack"], ["Service", "Stack", "NodeId"]]
    assert metrics[-1]["Stack"] == "parlor"
    # Every packet sent is counted, those of the last moments before the worker
    # exited too (its last status, not the poll a second earlier).
    assert heard
    assert sum(line["PacketsOut"] for line in metrics) >= len(heard)
    assert max(line["PacketsIn"] for line in metrics) > 0


def test_drain_timeout_closes_the_remaining_rooms(
    start_node: Callable[..., NodeProcess], media_events: MediaEvents, space: str
) -> None:
    node = start_node(DRAIN_TIMEOUT_SECONDS="2")

    async def scenario() -> None:
        listener = Peer(node.url, space)
        try:
            await listener.join(node.token("u_listener", space))
            await listener.connected()
            terminated = time.monotonic()
            node.process.terminate()
            await listener.wait_closed(timeout=10)
            assert time.monotonic() - terminated > 1.5
            assert listener.told("node_closing")
            left = await media_events.wait_for(
                type="participant_left", space_id=space, user_id="u_listener"
            )
            assert left["reason"] == "node_closing"
        finally:
            await listener.close()

    asyncio.run(scenario())
    assert node.process.wait(timeout=10) == 0
    assert node.registry_item() is None
