"""`make bench`: one Space start fanned out to many followers through the real alert
pipeline, against moto in server mode, counting the AWS requests it takes.

The Spaces table's stream is read from moto (and given the `eventSourceARN` Lambda
adds); the stream, fan-out and delivery handlers of the Chalice app are called with the
events Lambda would send; a poller stands in for Lambda's SQS event source (receive up
to ten, call the handler with the function's batch size, delete what succeeded). Every
request any of them makes is counted by service and operation through botocore.

Seeding (follow items, devices) goes straight into the tables and is not measured.
Results: bench/results/alerts.json. `FOLLOWERS=10000 make bench` for a quicker run."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The Chalice app (functions/app.py) must win over the CDK app of the same name.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "functions"))

FOLLOWERS = int(os.environ.get("FOLLOWERS", "100000"))
# One follower in a hundred has a phone registered for pushes.
DEVICE_EVERY = int(os.environ.get("DEVICE_EVERY", "100"))
RESULTS = ROOT / "bench" / "results" / "alerts.json"
REGION = "us-east-1"

# AWS list prices, us-east-1, USD (on-demand DynamoDB, standard SQS, SNS, Lambda x86).
PRICES = {
    "dynamodb_write_request_unit": 0.625 / 1e6,
    "dynamodb_read_request_unit": 0.125 / 1e6,
    "sqs_request": 0.40 / 1e6,
    "sns_request": 0.50 / 1e6,
    "sns_mobile_push_delivery": 0.50 / 1e6,
    "lambda_request": 0.20 / 1e6,
    "lambda_gb_second": 0.0000166667,
}
# Lambda durations in AWS are not measurable here; assumed from the requests a page
# makes one after another (about 15 ms each) at 512 MB.
LAMBDA_MEMORY_GB = 0.5
ASSUMED_REQUEST_SECONDS = 0.015


class Meter:
    """Counts every AWS request made through botocore, by phase, service, operation,
    and the items batch writes and batch reads carry (the capacity they consume)."""

    def __init__(self) -> None:
        self.phase = "setup"
        self.requests: Counter[tuple[str, str, str]] = Counter()
        self.items: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def install(self) -> None:
        from botocore.endpoint import Endpoint

        original = Endpoint.make_request
        meter = self

        def make_request(endpoint: Endpoint, operation_model: Any,
                         request_dict: Mapping[str, Any]) -> Any:
            meter.record(operation_model.service_model.service_name, operation_model.name,
                         request_dict.get("body"))
            return original(endpoint, operation_model, request_dict)

        Endpoint.make_request = make_request  # type: ignore[method-assign,assignment]

    def record(self, service: str, operation: str, body: Any) -> None:
        with self._lock:
            self.requests[(self.phase, service, operation)] += 1
            if self.phase == "setup" or operation not in ("BatchWriteItem", "BatchGetItem"):
                return
            payload = json.loads(body) if isinstance(body, bytes | str) and body else {}
            for request in payload.get("RequestItems", {}).values():
                count = len(request) if isinstance(request, list) else len(request["Keys"])
                self.items[(self.phase, operation)] += count

    def by_service(self, phases: set[str]) -> Counter[str]:
        totals: Counter[str] = Counter()
        for (phase, service, _), n in self.requests.items():
            if phase in phases:
                totals[service] += n
        return totals

    def by_operation(self, phases: set[str]) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for (phase, service, operation), n in self.requests.items():
            if phase in phases:
                totals[f"{service}:{operation}"] += n
        return dict(sorted(totals.items()))


def _environment(aws_url: str) -> None:
    from local.issuer import LocalIssuer

    issuer = LocalIssuer.generate()
    os.environ.update({
        "AWS_ENDPOINT_URL": aws_url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AUTH_ISSUER": issuer.issuer,
        "AUTH_JWKS": json.dumps(issuer.jwks()),
    })


def _seed(followers: int, device_every: int) -> tuple[str, int]:
    """The host, their followers, and some followers' devices; returns the host id and
    the number of devices."""
    import boto3

    from chalicelib.platform.models import AlertSettings, Follow, User

    host = "u-host"
    User(host, handle="host", display_name="Host", follower_count=followers,
         following_count=0, suspended=False, created_at=time.time()).save()
    client = boto3.client("dynamodb")
    ids = [f"u-{n:07d}" for n in range(followers)]
    for start in range(0, followers, 25):
        client.batch_write_item(RequestItems={Follow.Meta.table_name: [
            {"PutRequest": {"Item": {"follower_id": {"S": uid}, "followee_id": {"S": host},
                                     "created_at": {"N": "0"}}}}
            for uid in ids[start:start + 25]]})
    sns = boto3.client("sns")
    application = sns.create_platform_application(
        Name="parlor-fcm", Platform="GCM",
        Attributes={"PlatformCredential": "bench"})["PlatformApplicationArn"]
    os.environ["FCM_APPLICATION_ARN"] = application
    with_devices = ids[::device_every] if device_every else []
    with AlertSettings.batch_write() as batch:
        for uid in with_devices:
            endpoint = sns.create_platform_endpoint(
                PlatformApplicationArn=application, Token=f"token-{uid}",
                CustomUserData=uid)["EndpointArn"]
            batch.save(AlertSettings(uid, devices={
                "dev_1": {"platform": "fcm", "endpoint_arn": endpoint, "created_at": 0}}))
    return host, len(with_devices)


def _stream_records(table: str) -> list[dict[str, Any]]:
    """The Spaces stream's records as Lambda delivers them: moto leaves out
    `eventSourceARN` and gives the creation time as a datetime."""
    import boto3

    stream_arn = boto3.client("dynamodb").describe_table(TableName=table)["Table"][
        "LatestStreamArn"]
    streams = boto3.client("dynamodbstreams")
    records = []
    for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        for record in streams.get_records(ShardIterator=iterator)["Records"]:
            change = dict(record["dynamodb"])
            created = change.get("ApproximateCreationDateTime")
            if isinstance(created, datetime):
                change["ApproximateCreationDateTime"] = int(created.timestamp())
            records.append({**record, "dynamodb": change, "eventSourceARN": stream_arn,
                            "awsRegion": REGION})
    return records


class Poller:
    """Lambda's SQS event source, as far as requests go."""

    def __init__(self, meter: Meter, queue_url: str, queue_arn: str, batch_size: int,
                 handler: Callable[[dict[str, Any], Any], Any]) -> None:
        import boto3

        self.sqs = boto3.client("sqs")
        self.meter, self.url, self.arn = meter, queue_url, queue_arn
        self.batch_size, self.handler = batch_size, handler
        self.failures = 0
        self.invocations = 0

    def poll(self) -> int:
        self.meter.phase = "poller"
        messages = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10,
                                            WaitTimeSeconds=0).get("Messages", [])
        for start in range(0, len(messages), self.batch_size):
            batch = messages[start:start + self.batch_size]
            event = {"Records": [{
                "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"], "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs", "eventSourceARN": self.arn, "awsRegion": REGION,
            } for m in batch]}
            self.meter.phase = "pipeline"
            self.invocations += 1
            result = self.handler(event, None)
            failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
            self.failures += len(failed)
            self.meter.phase = "poller"
            done = [m for m in batch if m["MessageId"] not in failed]
            if done:
                self.sqs.delete_message_batch(QueueUrl=self.url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(done)])
        return len(messages)


def _queue(name: str) -> tuple[str, str]:
    import boto3

    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    return url, arn


def _cost(meter: Meter, followers: int, devices: int, invocations: int) -> dict[str, Any]:
    """USD per million alerts (one alert: one follower's bar entry and, where they have
    devices, one push per device), from the measured requests and items."""
    phases = {"pipeline", "poller"}
    services = meter.by_service(phases)
    ops = meter.by_operation(phases)
    writes = meter.items[("pipeline", "BatchWriteItem")] + sum(
        n for op, n in ops.items() if op in ("dynamodb:PutItem", "dynamodb:UpdateItem",
                                             "dynamodb:DeleteItem"))
    # Eventually consistent reads: half a unit per item of up to 4 KB; a Query of the
    # KEYS_ONLY followers index reads about 60 bytes per key.
    reads = 0.5 * meter.items[("pipeline", "BatchGetItem")] \
        + 0.5 * ops.get("dynamodb:GetItem", 0) \
        + sum(n for op, n in ops.items() if op == "dynamodb:Query") * 0.5 \
        + followers * 60 / 4096 * 0.5
    pushes = ops.get("sns:Publish", 0)
    lambda_seconds = ASSUMED_REQUEST_SECONDS * sum(
        n for (phase, _, _), n in meter.requests.items() if phase == "pipeline")
    parts = {
        "dynamodb": writes * PRICES["dynamodb_write_request_unit"]
        + reads * PRICES["dynamodb_read_request_unit"],
        "sqs": services["sqs"] * PRICES["sqs_request"],
        "sns": pushes * (PRICES["sns_request"] + PRICES["sns_mobile_push_delivery"]),
        "lambda": invocations * PRICES["lambda_request"]
        + lambda_seconds * LAMBDA_MEMORY_GB * PRICES["lambda_gb_second"],
    }
    scale = 1e6 / followers
    return {
        "usd_per_million_alerts": {k: round(v * scale, 4) for k, v in parts.items()},
        "usd_per_million_alerts_total": round(sum(parts.values()) * scale, 4),
        "assumptions": {
            "devices_per_follower": devices / followers,
            "write_request_units": writes, "read_request_units": round(reads, 1),
            "lambda_seconds_assumed": round(lambda_seconds, 1),
            "lambda_memory_gb": LAMBDA_MEMORY_GB,
            "prices_usd": PRICES,
        },
    }


def main() -> None:
    meter = Meter()
    meter.install()
    from local.aws import EmbeddedAws, create_tables

    aws = EmbeddedAws().start()
    _environment(aws.url)
    create_tables()
    fanout_url, fanout_arn = _queue("parlor-alert-fanout")
    delivery_url, delivery_arn = _queue("parlor-alert-delivery")
    os.environ["ALERT_FANOUT_QUEUE_URL"] = fanout_url
    os.environ["ALERT_DELIVERY_QUEUE_URL"] = delivery_url

    print(f"Seeding {FOLLOWERS:,} followers...", flush=True)
    seeded = time.perf_counter()
    host, devices = _seed(FOLLOWERS, DEVICE_EVERY)
    print(f"  seeded in {time.perf_counter() - seeded:.0f} s", flush=True)

    import app as chalice_app
    from chalicelib.platform.models import Space, TimelineEntry
    from chalicelib.rooms import spaces

    space = spaces.create(host, "Benchmark", ["bench"], None)
    fanout = Poller(meter, fanout_url, fanout_arn, 1, chalice_app.fan_out_alerts)
    delivery = Poller(meter, delivery_url, delivery_arn, 2, chalice_app.deliver_alerts)
    messages = {"fanout": 0, "delivery": 0}

    print("Fanning out...", flush=True)
    started = time.perf_counter()
    # Lambda reads the stream itself, at no charge: those requests are kept apart.
    meter.phase = "stream"
    records = _stream_records(Space.Meta.table_name)
    meter.phase = "pipeline"
    result = chalice_app.handle_space_changes({"Records": records}, None)
    stream_failures = len(result["batchItemFailures"])
    while True:
        handled_fanout = fanout.poll()
        handled_delivery = delivery.poll()
        messages["fanout"] += handled_fanout
        messages["delivery"] += handled_delivery
        if not handled_fanout and not handled_delivery:
            break
    elapsed = time.perf_counter() - started
    meter.phase = "check"

    entries = sum(1 for _ in TimelineEntry.scan(TimelineEntry.entry_key
                                                == f"{space.space_id}#{host}"))
    pushed = meter.requests[("pipeline", "sns", "Publish")]
    aws.stop()

    per_thousand = {s: round(n * 1000 / FOLLOWERS, 2)
                    for s, n in sorted(meter.by_service({"pipeline", "poller"}).items())}
    bar = meter.by_service({"pipeline", "poller"})
    report: dict[str, Any] = {
        "followers": FOLLOWERS,
        "devices": devices,
        "bar_entries_written": entries,
        "pushes_sent": pushed,
        "failures": {"stream": stream_failures, "fanout": fanout.failures,
                     "delivery": delivery.failures},
        "wall_seconds": round(elapsed, 1),
        "messages_handled": messages,
        "handler_invocations": {"stream": 1, "fanout": fanout.invocations,
                                "delivery": delivery.invocations},
        "requests_per_1000_followers": per_thousand,
        "requests_per_1000_followers_by_path": {
            "dynamodb_bar": round(1000 / FOLLOWERS * sum(
                n for op, n in meter.by_operation({"pipeline"}).items()
                if op.startswith("dynamodb:") and op != "dynamodb:BatchGetItem"), 2),
            "dynamodb_push_lookup": round(1000 / FOLLOWERS * meter.requests[
                ("pipeline", "dynamodb", "BatchGetItem")], 2),
            "sqs_sent_by_the_pipeline": round(1000 / FOLLOWERS * meter.by_service(
                {"pipeline"})["sqs"], 2),
            "sqs_lambda_poller": round(1000 / FOLLOWERS * meter.by_service(
                {"poller"})["sqs"], 2),
            "sns_per_device": round(pushed / devices, 2) if devices else None,
        },
        "requests_total": sum(bar.values()),
        "stream_reads_by_lambda_not_billed": meter.by_operation({"stream"}),
        "requests_by_operation": meter.by_operation({"pipeline", "poller"}),
        "cost": _cost(meter, FOLLOWERS, devices,
                      1 + fanout.invocations + delivery.invocations),
        "environment": {
            "aws": "moto[server] 5.2.5 in this process, one worker calling the handlers "
                   "one after another (Lambda would run deliveries side by side)",
            "machine_cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in (
        "followers", "bar_entries_written", "pushes_sent", "failures", "wall_seconds",
        "requests_per_1000_followers", "requests_per_1000_followers_by_path")}, indent=2))
    print(f"cost per million alerts: ${report['cost']['usd_per_million_alerts_total']}")
    print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
