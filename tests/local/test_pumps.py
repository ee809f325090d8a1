"""The local pumps deliver what Lambda's event source mappings deliver, and retry and
give up as they do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.aws import EmbeddedAws
from local.pumps import SqsPump, StreamPump, queue_with_dlq


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


class Recorder:
    """A handler that fails the records it is told to, the way Powertools reports them."""

    def __init__(self, fail: set[str] | None = None, key: str = "body") -> None:
        self.fail = fail or set()
        self.key = key
        self.batches: list[list[dict[str, Any]]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        assert context.get_remaining_time_in_millis() > 0
        self.batches.append(event["Records"])
        failures = []
        for record in event["Records"]:
            if self.key == "body" and record["body"] in self.fail:
                failures.append({"itemIdentifier": record["messageId"]})
            if self.key == "id" and record["dynamodb"]["Keys"]["id"]["S"] in self.fail:
                failures.append({"itemIdentifier": record["dynamodb"]["SequenceNumber"]})
        return {"batchItemFailures": failures}


def test_sqs_records_have_lambdas_shape_and_failures_go_to_the_dlq(aws: None) -> None:
    url, dlq = queue_with_dlq("events", max_receives=2, visibility_timeout=0)
    sqs = boto3.client("sqs")
    for body in ("good", "poison"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    handler = Recorder(fail={"poison"})
    pump = SqsPump("events", url, handler)
    for _ in range(4):
        pump.pump_once(wait_seconds=0)
    record = handler.batches[0][0]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"].endswith(":events")
    assert record["awsRegion"] == "us-east-1"
    assert {"messageId", "receiptHandle", "body", "attributes", "md5OfBody"} <= set(record)
    delivered = [r["body"] for batch in handler.batches for r in batch]
    assert delivered.count("good") == 1
    assert delivered.count("poison") == 2
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
    assert [m["Body"] for m in dead] == ["poison"]


@pytest.fixture
def aws_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # moto's in-process mock does not answer the Streams API with this botocore; the
    # server (what make up runs) does.
    server = EmbeddedAws().start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    try:
        yield
    finally:
        server.stop()


def test_stream_records_get_their_arn_and_failures_are_retried_then_reported(
    aws_server: None,
) -> None:
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName="things", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    failures = boto3.client("sqs").create_queue(QueueName="stream-failures")["QueueUrl"]
    handler = Recorder(fail={"b"}, key="id")
    pump = StreamPump("things", "things", handler, max_retries=2,
                      on_failure_queue_url=failures)
    for key in ("a", "b", "c"):
        dynamodb.put_item(TableName="things", Item={"id": {"S": key}})
    sizes = [pump.pump_once() for _ in range(4)]
    assert sizes == [3, 2, 2, 0]
    first = handler.batches[0][0]
    assert first["eventSourceARN"] == pump.stream_arn
    assert isinstance(first["dynamodb"]["ApproximateCreationDateTime"], float)
    assert first["eventName"] == "INSERT"
    retried = [[r["dynamodb"]["Keys"]["id"]["S"] for r in batch] for batch in handler.batches]
    assert retried == [["a", "b", "c"], ["b", "c"], ["b", "c"]]
    (report,) = boto3.client("sqs").receive_message(QueueUrl=failures)["Messages"]
    info = json.loads(report["Body"])["DDBStreamBatchInfo"]
    assert info["batchSize"] == 2
    assert info["streamArn"] == pump.stream_arn


def test_a_failed_transaction_neither_shows_in_the_stream_nor_stops_it(aws_server: None) -> None:
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName="rooms", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    handler = Recorder(fail=set(), key="id")
    pump = StreamPump("rooms", "rooms", handler)
    dynamodb.put_item(TableName="rooms", Item={"id": {"S": "before"}})
    assert pump.pump_once() == 1
    # The first write would apply, the second's condition fails: the whole transaction
    # is cancelled, as DynamoDB cancels it, and its write must not reach the handler.
    with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
        dynamodb.transact_write_items(TransactItems=[
            {"Put": {"TableName": "rooms", "Item": {"id": {"S": "cancelled"}}}},
            {"ConditionCheck": {"TableName": "rooms", "Key": {"id": {"S": "absent"}},
                                "ConditionExpression": "attribute_exists(id)"}},
        ])
    dynamodb.put_item(TableName="rooms", Item={"id": {"S": "after"}})
    assert pump.pump_once() == 1
    seen = [r["dynamodb"]["Keys"]["id"]["S"] for batch in handler.batches for r in batch]
    assert seen == ["before", "after"]
