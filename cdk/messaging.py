"""Queues between the control plane and the media nodes (docs/media-contract.md).

Nodes create their own command queues at start (each node's name is its own), so only
the media-events queue, shared by all nodes, and its dead-letter queue live here."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

# A record that fails this many times is a poison record: it goes to the DLQ.
MAX_RECEIVES = 5


class Messaging(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.media_events_dlq = sqs.Queue(
            self, "MediaEventsDlq",
            retention_period=Duration.days(14),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        self.media_events = sqs.Queue(
            self, "MediaEvents",
            # Six times the consumer's timeout, as Lambda's SQS guidance asks.
            visibility_timeout=Duration.seconds(6 * 60),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=MAX_RECEIVES,
                                                  queue=self.media_events_dlq),
        )
