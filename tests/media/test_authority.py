"""Authority on the node is current (docs/media-contract.md, sections 2, 4 and 8): a join
token kept past a demotion, a mute or a removal admits no more than the node was told;
duplicated and reordered commands change nothing; a node reconciles its rooms with the
control plane's tables whatever commands were lost; events outlive an SQS outage."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

from .conftest import Aws, MediaEvents, NodeProcess
from .outage import Outage
from .peers import Peer

pytestmark = pytest.mark.slow


async def _applied(node: NodeProcess, user: str, version: int, timeout: float = 5.0) -> None:
    """Until every worker of the node logged the member command (applied or not)."""
    deadline = time.monotonic() + timeout
    workers = len(node.health()["workers"])
    while True:
        seen = [line for line in await asyncio.to_thread(node.log_lines)
                if line.get("command", {}).get("user_id") == user
                and line.get("command", {}).get("version") == version]
        if len(seen) >= workers:
            return
        assert time.monotonic() < deadline, f"the node never applied {user} v{version}"
        await asyncio.sleep(0.1)


def _count(peer: Peer, kind: str, **fields: Any) -> int:
    return sum(1 for m in peer.messages
               if m.get("type") == kind and all(m.get(k) == v for k, v in fields.items()))


def test_a_kept_speaker_token_after_a_demotion_admits_a_listener(
    node: NodeProcess, space: str
) -> None:
    async def scenario() -> None:
        host = Peer(node.url, space, tone_hz=660)
        listener = Peer(node.url, space)
        kept = Peer(node.url, space, tone_hz=440)
        try:
            token = node.token("u_kept", space, "speaker", ver=100)
            await host.join(node.token("u_host", space, "host", ver=1))
            await listener.join(node.token("u_listener", space, ver=1))
            await asyncio.gather(host.connected(), listener.connected())
            version = await asyncio.to_thread(node.member, space, "u_kept", "listener",
                                              version=200)
            await _applied(node, "u_kept", version)

            await kept.join(token)
            await kept.connected()
            await kept.wait_told("welcome", role="listener")
            # The token said speaker: the node welcomed a listener, and only that.
            assert _count(kept, "welcome") == 1
            assert _count(kept, "welcome", role="speaker") == 0
            await asyncio.sleep(0.5)
            await listener.hear(660, present=True, timeout=1)
            await listener.hear(440, present=False, timeout=0.1)
        finally:
            await asyncio.gather(host.close(), listener.close(), kept.close())

    asyncio.run(scenario())


def test_a_kept_token_after_a_mute_admits_the_speaker_muted(
    node: NodeProcess, space: str
) -> None:
    async def scenario() -> None:
        listener = Peer(node.url, space)
        kept = Peer(node.url, space, tone_hz=440)
        try:
            token = node.token("u_kept", space, "speaker", ver=100)
            await listener.join(node.token("u_listener", space))
            await listener.connected()
            version = await asyncio.to_thread(node.member, space, "u_kept", "speaker",
                                              muted=True, version=200)
            await _applied(node, "u_kept", version)
            await kept.join(token)
            await kept.connected()
            await kept.wait_told("welcome", role="speaker", muted=True)
            # The token carried no mute: the welcome is the node's current state.
            assert _count(kept, "welcome", muted=False) == 0
            await asyncio.sleep(0.5)
            await listener.hear(440, present=False, timeout=0.1)
            # Their own unmute (a later version) lets them be heard.
            await asyncio.to_thread(node.member, space, "u_kept", "speaker", version=300)
            await listener.hear(440, present=True, timeout=3)
        finally:
            await asyncio.gather(listener.close(), kept.close())

    asyncio.run(scenario())


def test_a_kept_token_after_a_removal_is_refused(node: NodeProcess, space: str) -> None:
    async def scenario() -> None:
        host = Peer(node.url, space, tone_hz=660)
        kept = Peer(node.url, space)
        try:
            token = node.token("u_kept", space, ver=100)
            await host.join(node.token("u_host", space, "host"))
            await host.connected()
            version = await asyncio.to_thread(node.member, space, "u_kept", "removed",
                                              version=200)
            await _applied(node, "u_kept", version)
            with pytest.raises(AssertionError, match="403"):
                await kept.join(token)
        finally:
            await asyncio.gather(host.close(), kept.close())

    asyncio.run(scenario())


def test_duplicated_and_reordered_commands_change_nothing(
    node: NodeProcess, space: str
) -> None:
    async def scenario() -> None:
        speaker = Peer(node.url, space, tone_hz=440)
        listener = Peer(node.url, space)
        try:
            await speaker.join(node.token("u_speaker", space, "speaker", ver=100))
            await listener.join(node.token("u_listener", space, ver=100))
            await asyncio.gather(speaker.connected(), listener.connected())
            await listener.hear(440, present=True)

            demoted = await asyncio.to_thread(node.member, space, "u_speaker", "listener",
                                              version=300)
            await listener.hear(440, present=False, timeout=3)
            # The promotion that came before it arrives after it, then the demotion again.
            await asyncio.to_thread(node.member, space, "u_speaker", "speaker", version=200)
            await _applied(node, "u_speaker", 200)
            await asyncio.to_thread(node.member, space, "u_speaker", "listener",
                                    version=demoted)
            await asyncio.sleep(1.0)
            await listener.hear(440, present=False, timeout=0.1)
            assert _count(listener, "role_changed", user_id="u_speaker") == 1
            assert _count(speaker, "role_changed", user_id="u_speaker", role="listener") == 1
        finally:
            await asyncio.gather(speaker.close(), listener.close())

    asyncio.run(scenario())


def test_a_room_passes_on_a_limited_number_of_reactions(node: NodeProcess, space: str) -> None:
    async def scenario() -> None:
        watcher = Peer(node.url, space)
        senders = [Peer(node.url, space) for _ in range(6)]
        try:
            await watcher.join(node.token("u_watcher", space))
            for n, sender in enumerate(senders):
                await sender.join(node.token(f"u_sender_{n}", space))
            await asyncio.gather(*(p.connected() for p in [watcher, *senders]))
            for _ in range(5):
                for sender in senders:
                    sender.channel.send(json.dumps({"type": "reaction", "emoji": "👏"}))
            await asyncio.sleep(1.5)
            # 30 sent within a fraction of a second; the room passes on 20 a second.
            assert _count(watcher, "reaction") == 20
        finally:
            await asyncio.gather(watcher.close(), *(p.close() for p in senders))

    asyncio.run(scenario())


# -- events outlive an SQS outage ------------------------------------------------------


@pytest.fixture
def sqs_outage(aws: Aws) -> Iterator[Outage]:
    endpoint = urlsplit(aws.endpoint)
    outage = Outage(endpoint.hostname or "127.0.0.1", endpoint.port or 80)
    yield outage
    outage.close()


def test_events_survive_an_sqs_outage_of_a_few_seconds(
    start_node: Callable[..., NodeProcess], sqs_outage: Outage, media_events: MediaEvents,
    space: str,
) -> None:
    node = start_node(AWS_ENDPOINT_URL_SQS=sqs_outage.url)

    async def scenario() -> None:
        peer = Peer(node.url, space)
        try:
            sqs_outage.down()
            await peer.join(node.token("u_outage", space))
            await peer.connected()
            await asyncio.sleep(3)
            assert not media_events.matching(type="participant_connected", space_id=space)
            sqs_outage.up()
            connected = await media_events.wait_for(
                timeout=30, type="participant_connected", space_id=space, user_id="u_outage")
            assert connected["node_id"] == node.node_id
        finally:
            sqs_outage.up()
            await peer.close()

    try:
        asyncio.run(scenario())
        retried = [line for line in node.log_lines() if line.get("EventsRetried")]
        assert retried, "the node's metrics count no retried events"
    finally:
        node.stop()


# -- reconciliation with the control plane's tables ------------------------------------


class Tables:
    """The control plane's Spaces and Members tables, written as the control plane
    writes them (the node only reads them)."""

    def __init__(self, aws: Aws) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.spaces, self.members = f"parlor-spaces-{suffix}", f"parlor-members-{suffix}"
        self._client = boto3.client("dynamodb", endpoint_url=aws.endpoint,
                                    region_name="us-east-1")
        self._client.create_table(
            TableName=self.spaces, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "space_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "space_id", "AttributeType": "S"}])
        self._client.create_table(
            TableName=self.members, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "space_id", "KeyType": "HASH"},
                       {"AttributeName": "user_id", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "space_id", "AttributeType": "S"},
                                  {"AttributeName": "user_id", "AttributeType": "S"}])

    def space(self, space_id: str, node_id: str, state: str = "live") -> None:
        self._client.put_item(TableName=self.spaces, Item={
            "space_id": {"S": space_id}, "state": {"S": state}, "node_id": {"S": node_id},
            "host_id": {"S": "u_host"}})

    def member(self, space_id: str, user_id: str, role: str, version: int,
               muted: bool = False) -> None:
        self._client.put_item(TableName=self.members, Item={
            "space_id": {"S": space_id}, "user_id": {"S": user_id}, "role": {"S": role},
            "muted": {"BOOL": muted}, "authority": {"N": str(version)}})

    def delete(self) -> None:
        for table in (self.spaces, self.members):
            self._client.delete_table(TableName=table)


@pytest.fixture(scope="module")
def tables(aws: Aws) -> Iterator[Tables]:
    made = Tables(aws)
    yield made
    made.delete()


@pytest.fixture(scope="module")
def reconciling(start_node: Callable[..., NodeProcess], tables: Tables) -> NodeProcess:
    """A node of two workers that reads the tables every second."""
    return start_node(SPACES_TABLE=tables.spaces, MEMBERS_TABLE=tables.members,
                      RECONCILE_SECONDS="1", WORKERS="2")


def _room(node: NodeProcess, tables: Tables, space: str) -> tuple[Peer, Peer, Peer]:
    tables.space(space, node.node_id)
    tables.member(space, "u_host", "host", 1)
    tables.member(space, "u_speaker", "speaker", 1)
    tables.member(space, "u_listener", "listener", 1)
    return (Peer(node.url, space, tone_hz=660), Peer(node.url, space, tone_hz=440),
            Peer(node.url, space))


async def _join(node: NodeProcess, space: str, peers: tuple[Peer, Peer, Peer]) -> None:
    host, speaker, listener = peers
    await host.join(node.token("u_host", space, "host", ver=1))
    await speaker.join(node.token("u_speaker", space, "speaker", ver=1))
    await listener.join(node.token("u_listener", space, ver=1))
    await asyncio.gather(*(p.connected() for p in peers))
    await listener.hear(440, present=True)


# A Space whose commands were all lost converges within this.
CONVERGES_SECONDS = 15


def test_without_any_command_a_demotion_a_mute_and_a_removal_take_effect(
    reconciling: NodeProcess, tables: Tables, space: str
) -> None:
    async def scenario() -> None:
        peers = _room(reconciling, tables, space)
        _host, speaker, listener = peers
        try:
            await _join(reconciling, space, peers)
            tables.member(space, "u_host", "host", 2, muted=True)
            tables.member(space, "u_speaker", "listener", 2)
            await listener.hear(660, present=False, timeout=CONVERGES_SECONDS)
            await listener.hear(440, present=False, timeout=CONVERGES_SECONDS)
            await speaker.wait_told("role_changed", user_id="u_speaker", role="listener",
                                    timeout=CONVERGES_SECONDS)
            await listener.wait_told("muted", user_id="u_host", timeout=CONVERGES_SECONDS)
            tables.member(space, "u_listener", "removed", 3)
            await listener.wait_closed(timeout=CONVERGES_SECONDS)
            assert listener.told("removed", user_id="u_listener")
        finally:
            await asyncio.gather(*(p.close() for p in peers))

    asyncio.run(scenario())


def test_without_any_command_an_ended_space_closes(
    reconciling: NodeProcess, tables: Tables, space: str, media_events: MediaEvents
) -> None:
    async def scenario() -> None:
        peers = _room(reconciling, tables, space)
        try:
            await _join(reconciling, space, peers)
            tables.space(space, reconciling.node_id, state="ended")
            await asyncio.gather(*(p.wait_closed(timeout=CONVERGES_SECONDS) for p in peers))
            assert all(p.told("space_ended") for p in peers)
            left = await media_events.wait_for(type="participant_left", space_id=space,
                                               user_id="u_host")
            assert left["reason"] == "ended"
            late = Peer(reconciling.url, space)
            with pytest.raises(AssertionError, match="410"):
                await late.join(reconciling.token("u_late", space))
            await late.close()
        finally:
            await asyncio.gather(*(p.close() for p in peers))

    asyncio.run(scenario())


def test_a_space_that_moved_away_is_closed_here(
    reconciling: NodeProcess, tables: Tables, space: str
) -> None:
    async def scenario() -> None:
        peers = _room(reconciling, tables, space)
        try:
            await _join(reconciling, space, peers)
            tables.space(space, "node-elsewhere")
            await asyncio.gather(*(p.wait_closed(timeout=CONVERGES_SECONDS) for p in peers))
            assert all(p.told("rejoin", reason="moved") for p in peers)
            # A token that still names this node is sent to the Space's node instead.
            late = Peer(reconciling.url, space)
            with pytest.raises(AssertionError, match=r"409.*space_moved"):
                await late.join(reconciling.token("u_late", space))
            await late.close()
        finally:
            await asyncio.gather(*(p.close() for p in peers))

    asyncio.run(scenario())


def test_a_restarted_worker_admits_with_the_truth_not_the_token(
    reconciling: NodeProcess, tables: Tables, space: str
) -> None:
    """A worker that restarts remembers nothing; it reads the member's authority before
    admitting a voice into the mix."""

    async def scenario() -> None:
        peers = _room(reconciling, tables, space)
        _host, speaker, _listener = peers
        kept = Peer(reconciling.url, space, tone_hz=550)
        try:
            await _join(reconciling, space, peers)
            token = reconciling.token("u_kept", space, "speaker", ver=1)
            tables.member(space, "u_kept", "listener", 5)
            worker = speaker.worker
            pid = next(w["pid"] for w in reconciling.health()["workers"]
                       if w["index"] == worker)
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 20
            while not all(w["ready"] for w in reconciling.health()["workers"]) or \
                    pid in reconciling.worker_pids():
                assert time.monotonic() < deadline, "the worker did not come back"
                await asyncio.sleep(0.2)
            await kept.join(token)
            await kept.connected()
            await kept.wait_told("welcome", role="listener")
        finally:
            await asyncio.gather(kept.close(), *(p.close() for p in peers))

    asyncio.run(scenario())
