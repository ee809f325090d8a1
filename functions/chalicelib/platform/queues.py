"""The SQS queues between Parlor's parts, defined once: the CDK stack makes them in AWS
(cdk/messaging.py, cdk/alerts.py) and the local runtime makes them in its embedded AWS
(local/up.py), both from the specs here, as both make the tables from the models.

Every queue that a Lambda handler consumes has a dead-letter queue; a record that fails
`max_receives` times is a poison record and moves there. The Spaces table's stream has
no redrive policy of its own: its handler's on-failure destination is a queue too, so
nothing that fails is dropped unseen."""

from __future__ import annotations

from dataclasses import dataclass

# Chalice's default Lambda timeout. SQS hides a received message six times as long, as
# Lambda's guidance for SQS event sources asks.
FUNCTION_TIMEOUT_SECONDS = 60
VISIBILITY_TIMEOUT_SECONDS = 6 * FUNCTION_TIMEOUT_SECONDS
MAX_RECEIVES = 5
# The placeholders Chalice's decorators need before a stack exists; the stack points
# each event source at the queue or stream it made. They are also the local names.
LOCAL_ACCOUNT = "000000000000"
LOCAL_REGION = "us-east-1"


@dataclass(frozen=True)
class QueueSpec:
    name: str  # the local queue name; in AWS, CloudFormation names it
    logical_name: str  # the CDK construct id
    # The environment variable through which the app learns the URL, for queues the app
    # sends to (the media nodes learn the media-events queue from their own settings).
    url_variable: str | None
    # The Chalice handler that consumes it (its function in the synthesized template).
    consumer: str | None
    max_receives: int = MAX_RECEIVES

    @property
    def dlq_name(self) -> str:
        return f"{self.name}-dlq"

    @property
    def placeholder_arn(self) -> str:
        return f"arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{self.name}"


MEDIA_EVENTS = QueueSpec("parlor-media-events", "MediaEvents", None, "HandleMediaEvents")
ALERT_FANOUT = QueueSpec("parlor-alert-fanout", "Fanout", "ALERT_FANOUT_QUEUE_URL",
                         "FanOutAlerts")
ALERT_DELIVERY = QueueSpec("parlor-alert-delivery", "Delivery", "ALERT_DELIVERY_QUEUE_URL",
                           "DeliverAlerts")
# The on-failure destination of the Spaces stream's handler: a dead-letter queue that
# no redrive policy names, so it has no consumer and no DLQ of its own.
SPACE_CHANGES_FAILURES = QueueSpec("parlor-space-changes-failures", "StreamDlq", None, None)
# The on-failure destination of the command dispatchers (commands.py), for both tables'
# streams: a committed change whose command could not be sent is described there.
COMMAND_FAILURES = QueueSpec("parlor-command-failures", "CommandDlq", None, None)
# Lambda retries a failing stream batch this often (bisecting it) before it gives up.
STREAM_MAX_RETRIES = MAX_RECEIVES
SPACES_STREAM_PLACEHOLDER_ARN = (f"arn:aws:dynamodb:{LOCAL_REGION}:{LOCAL_ACCOUNT}:table/"
                                 "parlor-spaces/stream/2026-01-01T00:00:00.000")
MEMBERS_STREAM_PLACEHOLDER_ARN = (f"arn:aws:dynamodb:{LOCAL_REGION}:{LOCAL_ACCOUNT}:table/"
                                  "parlor-members/stream/2026-01-01T00:00:00.000")

CONSUMED = (MEDIA_EVENTS, ALERT_FANOUT, ALERT_DELIVERY)
