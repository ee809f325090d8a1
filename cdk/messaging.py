"""Queues between the control plane and the media nodes (docs/media-contract.md).

Nodes create their own command queues at start (each node's name is its own), so only
the media-events queue, shared by all nodes, and its dead-letter queue live here."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from chalicelib.platform.queues import MEDIA_EVENTS, VISIBILITY_TIMEOUT_SECONDS, QueueSpec


def dead_letter_queue(scope: Construct, construct_id: str) -> sqs.Queue:
    return sqs.Queue(scope, construct_id, retention_period=Duration.days(14),
                     encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True)


def consumed_queue(scope: Construct, spec: QueueSpec) -> tuple[sqs.Queue, sqs.Queue]:
    """A queue a Lambda handler consumes, and its dead-letter queue, as `spec` says."""
    dlq = dead_letter_queue(scope, f"{spec.logical_name}Dlq")
    queue = sqs.Queue(
        scope, spec.logical_name,
        visibility_timeout=Duration.seconds(VISIBILITY_TIMEOUT_SECONDS),
        encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
        dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=spec.max_receives,
                                              queue=dlq))
    return queue, dlq


class Messaging(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.media_events, self.media_events_dlq = consumed_queue(self, MEDIA_EVENTS)
