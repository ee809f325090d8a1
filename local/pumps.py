"""Pumps: what Lambda's event source mappings do in AWS, done locally.

An SQS pump long-polls a queue, hands the batch to the same handler Lambda would call,
in the exact shape Lambda delivers it, and deletes the records the handler did not
report as failed (ReportBatchItemFailures). Failed records become visible again after
the queue's visibility timeout, and the queue's redrive policy moves a record that
keeps failing to its dead-letter queue, as in AWS.

A stream pump reads a table's DynamoDB stream in order. A batch with failures is
retried from the first failed record, as Lambda does with ReportBatchItemFailures; after
`max_retries` the failed part is described on the on-failure queue (Lambda's OnFailure
destination message) and the pump moves on. moto's records lack `eventSourceARN`, carry
a fixed region and a datetime for `ApproximateCreationDateTime`: the pump fills them in
as Lambda delivers them.

moto rolls a failed transaction back by putting a deep copy of each table it touched in
place of the table, stream shard included: a shard iterator taken before that keeps
reading the discarded shard, which holds the failed transaction's writes (DynamoDB
streams never show those) and receives nothing after. So the pump asks for a fresh
iterator, after the last sequence number it handled, for every read."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
from chalice.local import LambdaContext

log = logging.getLogger("parlor.pumps")

Handler = Callable[[dict[str, Any], Any], Any]


def sqs_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """An SQS message (ReceiveMessage's shape) as Lambda's SQS event record."""
    attributes = {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value["DataType"],
        }
        for name, value in message.get("MessageAttributes", {}).items()
    }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": attributes,
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(  # noqa: S324
            message["Body"].encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


class SqsPump:
    def __init__(self, name: str, queue_url: str, handler: Handler, batch_size: int = 10) -> None:
        self.name = name
        self.queue_url = queue_url
        self._handler = handler
        self._batch_size = batch_size
        self._sqs = boto3.client("sqs")
        self._arn = self._sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self._region = self._sqs.meta.region_name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pump-{name}", daemon=True)

    def start(self) -> SqsPump:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def pump_once(self, wait_seconds: int = 1) -> int:
        """One receive and one invocation; returns how many records were handed over."""
        messages = self._sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=self._batch_size,
            WaitTimeSeconds=wait_seconds, AttributeNames=["All"],
            MessageAttributeNames=["All"]).get("Messages", [])
        if not messages:
            return 0
        records = [sqs_record(m, self._arn, self._region) for m in messages]
        context = LambdaContext(self.name, memory_size=256, max_runtime_ms=60_000)
        try:
            response = self._handler({"Records": records}, context)
        except Exception:
            # A handler that raises fails the whole batch, as in Lambda.
            log.exception("%s: the handler failed the whole batch", self.name)
            return len(records)
        failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self._sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(done[start:start + 10])])
        if failed:
            log.warning("%s: %d of %d records failed; they will be retried", self.name,
                        len(failed), len(records))
        return len(records)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.pump_once()
            except Exception:
                log.exception("%s: receive failed", self.name)
                self._stop.wait(1)


def stream_record(record: Mapping[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """A GetRecords record as Lambda's DynamoDB stream event record."""
    out = dict(record)
    dynamodb = dict(record["dynamodb"])
    created = dynamodb.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        dynamodb["ApproximateCreationDateTime"] = float(int(created.timestamp()))
    out["dynamodb"] = dynamodb
    out["awsRegion"] = region
    out["eventSourceARN"] = stream_arn
    return out


class StreamPump:
    def __init__(self, name: str, table_name: str, handler: Handler, *, batch_size: int = 100,
                 max_retries: int = 3, on_failure_queue_url: str | None = None) -> None:
        self.name = name
        self._handler = handler
        self._batch_size = batch_size
        self._max_retries = max_retries
        self._on_failure = on_failure_queue_url
        self._streams = boto3.client("dynamodbstreams")
        self._sqs = boto3.client("sqs")
        self.stream_arn = boto3.client("dynamodb").describe_table(
            TableName=table_name)["Table"]["LatestStreamArn"]
        self._region = self._streams.meta.region_name
        self._shard_id = self._streams.describe_stream(
            StreamArn=self.stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
        self._last_sequence: str | None = None
        self._pending: list[dict[str, Any]] = []
        self._attempts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pump-{name}", daemon=True)

    def start(self) -> StreamPump:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def pump_once(self) -> int:
        """One batch: reads more records if none are waiting for a retry, invokes the
        handler, and keeps what failed for the next call. Returns the batch's size."""
        if not self._pending:
            answer = self._streams.get_records(ShardIterator=self._iterator(),
                                               Limit=self._batch_size)
            self._pending = [stream_record(r, self.stream_arn, self._region)
                             for r in answer["Records"]]
            if self._pending:
                self._last_sequence = self._pending[-1]["dynamodb"]["SequenceNumber"]
            self._attempts = 0
        batch = self._pending
        if not batch:
            return 0
        context = LambdaContext(self.name, memory_size=256, max_runtime_ms=60_000)
        try:
            response = self._handler({"Records": batch}, context)
            failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        except Exception:
            log.exception("%s: the handler failed the whole batch", self.name)
            failed = {batch[0]["dynamodb"]["SequenceNumber"]}
        sequence = [r["dynamodb"]["SequenceNumber"] for r in batch]
        if not failed:
            self._pending = []
            return len(batch)
        # Lambda retries from the first failed record; an unknown id fails the batch.
        positions = [i for i, number in enumerate(sequence) if number in failed]
        first = positions[0] if positions else 0
        self._attempts += 1
        if self._attempts > self._max_retries:
            self._give_up(batch[first:])
            self._pending = []
        else:
            self._pending = batch[first:]
        return len(batch)

    def _iterator(self) -> str:
        position: dict[str, str] = (
            {"ShardIteratorType": "TRIM_HORIZON"} if self._last_sequence is None else
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": self._last_sequence})
        return str(self._streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=self._shard_id, **position)["ShardIterator"])

    def _give_up(self, records: list[dict[str, Any]]) -> None:
        log.error("%s: %d records failed %d times; sent to the on-failure queue", self.name,
                  len(records), self._attempts)
        if self._on_failure is None:
            return
        info = {
            "shardId": self._shard_id,
            "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
            "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
            "approximateArrivalOfFirstRecord":
                records[0]["dynamodb"].get("ApproximateCreationDateTime"),
            "approximateArrivalOfLastRecord":
                records[-1]["dynamodb"].get("ApproximateCreationDateTime"),
            "batchSize": len(records),
            "streamArn": self.stream_arn,
        }
        message = {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(),
            "requestContext": {"functionArn": self.name, "condition": "RetryAttemptsExhausted",
                               "approximateInvokeCount": self._attempts},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
            "DDBStreamBatchInfo": info,
        }
        self._sqs.send_message(QueueUrl=self._on_failure, MessageBody=json.dumps(message))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.pump_once() == 0:
                    self._stop.wait(0.2)
            except Exception:
                log.exception("%s: reading the stream failed", self.name)
                self._stop.wait(1)


def queue_with_dlq(name: str, max_receives: int, visibility_timeout: int = 5) -> tuple[str, str]:
    """(queue URL, dead-letter queue URL), the pair the CDK stack makes in AWS."""
    sqs = boto3.client("sqs")
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(
        QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = f'{{"deadLetterTargetArn": "{dlq_arn}", "maxReceiveCount": "{max_receives}"}}'
    url = sqs.create_queue(QueueName=name, Attributes={
        "RedrivePolicy": redrive, "VisibilityTimeout": str(visibility_timeout)})["QueueUrl"]
    return url, dlq_url


class Schedule:
    """An EventBridge schedule, locally: calls the handler with a Scheduled Event every
    `seconds` (in AWS the rule's rate may be longer; the handler does not depend on it)."""

    def __init__(self, name: str, handler: Handler, seconds: float) -> None:
        self.name = name
        self._handler = handler
        self._seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"schedule-{name}", daemon=True)

    def start(self) -> Schedule:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def fire(self) -> Any:
        event = {
            "version": "0", "id": uuid.uuid4().hex, "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "000000000000",
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "region": "us-east-1",
            "resources": [f"arn:aws:events:us-east-1:000000000000:rule/{self.name}"],
            "detail": {},
        }
        return self._handler(event, LambdaContext(self.name, memory_size=256,
                                                  max_runtime_ms=60_000))

    def _run(self) -> None:
        while not self._stop.wait(self._seconds):
            try:
                self.fire()
            except Exception:
                log.exception("%s: the scheduled handler failed", self.name)
