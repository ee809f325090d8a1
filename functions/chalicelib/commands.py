"""Commands to a Space's media node, on that node's own SQS queue.

The shapes are documented in docs/media-contract.md. A Space that no one has joined
has no node yet, and then there is nobody to tell."""

from __future__ import annotations

import json
import logging
import time
import uuid
from functools import cache
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import DoesNotExist

from .models import MediaNode, Space

log = logging.getLogger(__name__)

_BATCH = 10  # SQS SendMessageBatch takes at most ten entries


@cache
def _sqs() -> Any:
    return boto3.client("sqs")


def command(kind: str, space_id: str, user_id: str | None = None,
            role: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": 1,
        "type": kind,
        "space_id": space_id,
        "command_id": "c_" + uuid.uuid4().hex,
        "issued_at": time.time(),
    }
    if user_id is not None:
        body["user_id"] = user_id
    if role is not None:
        body["role"] = role
    return body


def send(space: Space, commands: list[dict[str, Any]]) -> int:
    """Sends the commands to the Space's node; returns how many were sent.

    A failure to reach the queue is logged, not raised: the decision is already
    committed, and the node also learns roles from the join token at each join."""
    if not commands or not space.node_id:
        return 0
    try:
        node = MediaNode.get(space.node_id)
    except DoesNotExist:
        log.warning("node %s of space %s is gone; commands dropped",
                    space.node_id, space.space_id)
        return 0
    sent = 0
    for start in range(0, len(commands), _BATCH):
        chunk = commands[start:start + _BATCH]
        entries = [{"Id": str(i), "MessageBody": json.dumps(c)} for i, c in enumerate(chunk)]
        try:
            result = _sqs().send_message_batch(QueueUrl=node.command_queue_url, Entries=entries)
        except (BotoCoreError, ClientError):
            log.exception("commands to node %s failed", node.node_id)
            continue
        sent += len(result.get("Successful", []))
        for failure in result.get("Failed", []):
            log.error("command to node %s failed: %s", node.node_id, failure)
    return sent
