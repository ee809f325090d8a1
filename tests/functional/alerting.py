"""The alert pipeline driven as Lambda drives it: stream records built from the Spaces
table's real items before and after a change, and SQS messages received from moto's
queues and handed to the handlers in the events Lambda would send."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sns.models import sns_backends

from chalicelib.platform.models import Space, TimelineEntry
from tests.events import dynamodb_stream_event, sqs_event
from tests.functional.conftest import Caller, World

T = TypeVar("T")
REGION = "us-east-1"
WEBSOCKET_API_ID = "abcdef1234"


class Pipeline:
    def __init__(self, world: World) -> None:
        self.world = world
        sqs = boto3.client("sqs")
        self.queues: dict[str, str] = {}
        self.arns: dict[str, str] = {}
        for name in ("fanout", "delivery"):
            url = sqs.create_queue(QueueName=f"parlor-alert-{name}")["QueueUrl"]
            self.queues[name] = url
            self.arns[name] = sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns = boto3.client("sns")
        self.applications = {
            platform: sns.create_platform_application(
                Name=f"parlor-{platform}", Platform=platform,
                Attributes={"PlatformCredential": "test"})["PlatformApplicationArn"]
            for platform in ("APNS", "GCM")
        }
        self.delivered: list[str] = []
        self.failures: list[str] = []

    def environment(self) -> dict[str, str]:
        return {
            "ALERT_FANOUT_QUEUE_URL": self.queues["fanout"],
            "ALERT_DELIVERY_QUEUE_URL": self.queues["delivery"],
            "APNS_APPLICATION_ARN": self.applications["APNS"],
            "FCM_APPLICATION_ARN": self.applications["GCM"],
            "WEBSOCKET_API_ID": WEBSOCKET_API_ID,
        }

    # The stream

    @staticmethod
    def image(space_id: str) -> dict[str, Any] | None:
        return boto3.client("dynamodb").get_item(
            TableName=Space.Meta.table_name, Key={"space_id": {"S": space_id}},
            ConsistentRead=True).get("Item")

    def stream(self, *changes: tuple[dict[str, Any] | None, dict[str, Any] | None]
               ) -> dict[str, Any]:
        response = self.world.client.lambda_.invoke(
            "handle_space_changes", dynamodb_stream_event(*changes))
        return response.payload  # type: ignore[no-any-return]

    def change(self, space_id: str, action: Callable[[], T]) -> T:
        """Runs `action` and streams the Space's change, as DynamoDB would."""
        old = self.image(space_id)
        result = action()
        new = self.image(space_id)
        if old != new:
            assert self.stream((old, new)) == {"batchItemFailures": []}
        return result

    def start_live(self, host: Caller, title: str = "Morning chat") -> str:
        reply = host.post("/spaces", {"title": title, "topics": ["tech"]})
        assert reply.status == 201, reply.json
        space_id = str(reply.json["space_id"])
        assert self.stream((None, self.image(space_id))) == {"batchItemFailures": []}
        return space_id

    # The queues

    def receive(self, name: str) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs")
        found: list[dict[str, Any]] = []
        while True:
            batch = sqs.receive_message(QueueUrl=self.queues[name], MaxNumberOfMessages=10,
                                        WaitTimeSeconds=0).get("Messages", [])
            if not batch:
                return found
            for message in batch:
                sqs.delete_message(QueueUrl=self.queues[name],
                                   ReceiptHandle=message["ReceiptHandle"])
            found += batch

    def handle(self, name: str, *bodies: str) -> list[str]:
        """Hands bodies to the queue's handler; returns the bodies it reported failed."""
        handler = {"fanout": "fan_out_alerts", "delivery": "deliver_alerts"}[name]
        event = sqs_event(*bodies, source_arn=self.arns[name])
        payload = self.world.client.lambda_.invoke(handler, event).payload
        failed = {f["itemIdentifier"] for f in payload["batchItemFailures"]}
        return [r["body"] for r in event["Records"] if r["messageId"] in failed]

    def drain(self) -> None:
        """Runs fan-out and delivery until both queues are empty; bodies that fail are
        kept in `failures` (in AWS they would be retried, then dead-lettered)."""
        while True:
            pages = self.receive("fanout")
            deliveries = self.receive("delivery")
            if not pages and not deliveries:
                return
            for page in pages:
                self.failures += self.handle("fanout", page["Body"])
            for start in range(0, len(deliveries), 2):
                bodies = [m["Body"] for m in deliveries[start:start + 2]]
                self.delivered += bodies
                self.failures += self.handle("delivery", *bodies)

    # What users got

    def device(self, user: Caller, platform: str = "fcm", token: str | None = None) -> str:
        reply = user.post("/me/devices", {"platform": platform,
                                          "token": token or f"token-{user.user_id}-{platform}"})
        assert reply.status == 201, reply.json
        return str(reply.json["device_id"])

    def endpoints(self) -> dict[str, Any]:
        return sns_backends[DEFAULT_ACCOUNT_ID][REGION].platform_endpoints  # type: ignore

    def pushes(self, user: Caller) -> list[str]:
        """The texts of every notification sent to the user's devices."""
        texts = []
        for endpoint in self.endpoints().values():
            if endpoint.custom_user_data == user.user_id:
                texts += [json.loads(m)["default"] for m in endpoint.messages.values()]
        return texts

    @staticmethod
    def posts(connection_id: str) -> list[dict[str, Any]]:
        backend = apigatewaymanagementapi_backends[DEFAULT_ACCOUNT_ID][REGION]
        data = backend.connections[connection_id].data.decode()
        return [json.loads(line) for line in data.replace("}{", "}\n{").splitlines()]

    @staticmethod
    def bar(user: Caller) -> list[tuple[str, list[str]]]:
        reply = user.get("/me/timeline/spaces")
        assert reply.status == 200, reply.json
        return [(item["space"]["space_id"], [p["user_id"] for p in item["people"]])
                for item in reply.json["items"]]

    @staticmethod
    def entries(user: Caller) -> list[str]:
        return [e.entry_key for e in TimelineEntry.query(user.user_id)]
