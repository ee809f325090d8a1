"""The API through chalice.test.Client, against moto's DynamoDB and SQS."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

from chalicelib.platform.config import settings
from chalicelib.platform.models import MediaNode, Member, Space, User
from chalicelib.platform.queues import STREAM_MAX_RETRIES
from local.aws import create_tables
from local.pumps import StreamPump
from tests import openapi
from tests.conftest import ISSUER


@dataclass
class Reply:
    status: int
    json: Any
    headers: dict[str, str]


class Caller:
    """One user of the API, with their bearer token."""

    def __init__(self, client: Client, user_id: str | None, token: str | None = None) -> None:
        self.client = client
        self.user_id = user_id
        self.token = token if token is not None else (ISSUER.mint(user_id) if user_id else None)

    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None, raw: str | None = None) -> Reply:
        all_headers = {"Content-Type": "application/json"}
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        all_headers.update(headers or {})
        payload = raw if raw is not None else (json.dumps(body) if body is not None else None)
        response = getattr(self.client.http, method.lower())(
            path, headers=all_headers, body=payload)
        text = response.body.decode() if response.body else ""
        reply = Reply(response.status_code, json.loads(text) if text else None,
                      dict(response.headers))
        openapi.check_response(method, path, reply.status, reply.json)
        return reply

    def get(self, path: str) -> Reply:
        return self.call("GET", path)

    def post(self, path: str, body: Any = None) -> Reply:
        return self.call("POST", path, body)

    def put(self, path: str, body: Any = None) -> Reply:
        return self.call("PUT", path, body)

    def delete(self, path: str) -> Reply:
        return self.call("DELETE", path)


class World:
    """Users of one test, made through the API, plus direct set-up where a test needs
    many followers (writing 600 follow items per test would only slow the suite)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._dispatchers: list[StreamPump] = []

    def dispatch(self) -> None:
        """Feeds every change committed so far on the Members and Spaces tables' streams
        to the command dispatchers, as Lambda's event source mappings do."""
        if not self._dispatchers:
            for name, table, handler in (
                    ("member-commands", Member.Meta.table_name, "dispatch_member_commands"),
                    ("space-commands", Space.Meta.table_name, "dispatch_space_commands")):
                self._dispatchers.append(StreamPump(
                    name, table, self._invoker(handler), max_retries=STREAM_MAX_RETRIES))
        for pump in self._dispatchers:
            while pump.pump_once():
                pass

    def _invoker(self, handler: str) -> Any:
        def invoke(event: dict[str, Any], context: Any) -> Any:
            return self.client.lambda_.invoke(handler, event).payload
        return invoke

    def caller(self, user_id: str | None, token: str | None = None) -> Caller:
        return Caller(self.client, user_id, token)

    def user(self, handle: str, followers: int = 0) -> Caller:
        caller = self.caller(f"u-{handle}")
        reply = caller.put("/me", {"handle": handle, "display_name": handle.title()})
        assert reply.status == 200, reply.json
        if followers:
            User(caller.user_id).update(actions=[User.follower_count.set(followers)])
        return caller

    def host(self, handle: str = "alice") -> Caller:
        return self.user(handle, followers=settings().hosting_follower_threshold)

    def live_space(self, host: Caller, title: str = "Morning chat") -> str:
        reply = host.post("/spaces", {"title": title, "topics": ["tech"]})
        assert reply.status == 201, reply.json
        return str(reply.json["space_id"])

    def node(self, node_id: str = "node-a", *, participants: int = 0, capacity: int = 100,
             age: float = 0.0, draining: bool = False, full_spaces: list[str] | None = None,
             relayed_spaces: list[str] | None = None, private: bool = True) -> str:
        """Registers a media node as a node's heartbeat would, with its command queue.
        `private=False`: an entry without a private URL, as nodes wrote before relays."""
        queue_url = boto3.client("sqs").create_queue(QueueName=f"cmd-{node_id}")["QueueUrl"]
        now = time.time()
        MediaNode(node_id, url=f"http://{node_id}.test:8700", command_queue_url=queue_url,
                  private_url=f"http://10.0.0.{len(node_id)}:8700" if private else None,
                  capacity=capacity, participants=participants, rooms=0, cpu=0,
                  full_spaces=full_spaces or [], relayed_spaces=relayed_spaces or [],
                  heartbeat_at=now - age, draining=draining, expires_at=int(now + 60)).save()
        return queue_url

    def commands(self, queue_url: str) -> list[dict[str, Any]]:
        """The commands the node of `queue_url` got from the changes committed so far."""
        self.dispatch()
        sqs = boto3.client("sqs")
        found: list[dict[str, Any]] = []
        while True:
            batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                        WaitTimeSeconds=0).get("Messages", [])
            if not batch:
                return found
            for message in batch:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        create_tables()
        yield


@pytest.fixture
def client(aws: None) -> Iterator[Client]:
    from app import app

    with Client(app, project_dir="functions") as test_client:
        yield test_client


@pytest.fixture
def world(client: Client) -> World:
    return World(client)


@pytest.fixture
def alerts(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The alert pipeline's queues and push applications, and a driver for it."""
    from tests.functional.alerting import Pipeline

    pipeline = Pipeline(world)
    for name, value in pipeline.environment().items():
        monkeypatch.setenv(name, value)
    settings.cache_clear()
    yield pipeline
    settings.cache_clear()
