"""Commands to the media nodes, derived from committed state.

The Members and Spaces tables' streams feed the dispatchers here: each committed change
a node must act on becomes a command on the queue of the node that holds the Space, and
of the node that held it when it moved. A send that fails raises, so Lambda retries the
record (and after STREAM_MAX_RETRIES describes it on the on-failure queue): a committed
change is never only logged. A member command states the member's whole authority at a
version (authority.py), so a node ignores a duplicate, a retry or one that arrives after
a later one. Nodes also reconcile with the tables every few seconds, which repairs what
no command reached. Shapes: docs/media-contract.md, section 4."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from pynamodb.exceptions import DoesNotExist

from ..platform.models import MediaNode, Space

log = logging.getLogger(__name__)

VERSION = 2
LIVE, ENDED = "live", "ended"
LISTENER, REMOVED = "listener", "removed"
STAGE_ROLES = ("host", "co_host", "speaker")


class SendFailed(RuntimeError):
    """SQS did not take a command: the stream record is retried."""


@cache
def _sqs() -> Any:
    return boto3.client("sqs")


def command(kind: str, space_id: str, **fields: Any) -> dict[str, Any]:
    return {"v": VERSION, "type": kind, "space_id": space_id,
            "command_id": "c_" + uuid.uuid4().hex, "issued_at": time.time(), **fields}


def member_command(space_id: str, user_id: str, version: int, role: str,
                   muted: bool) -> dict[str, Any]:
    return command("member", space_id, user_id=user_id, version=version, role=role,
                   muted=muted)


def for_member_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What one change of a member item tells the node of its Space."""
    if new:
        space_id, user_id = str(new["space_id"]), str(new["user_id"])
        version = int(new.get("authority") or 0)
        if old and int(old.get("authority") or 0) == version:
            return []  # requests and invitations: nothing the node acts on
        if not old and new.get("role") != REMOVED:
            return []  # a new member (a listener, a host going live): their token says it
        return [member_command(space_id, user_id, version, str(new["role"]),
                               bool(new.get("muted")))]
    if old and old.get("role") in STAGE_ROLES:
        # They left the Space (the item went) while on stage: off the stage, at a
        # version above their last; joining again starts from a later one still.
        return [member_command(str(old["space_id"]), str(old["user_id"]),
                               int(old.get("authority") or 0) + 1, LISTENER, False)]
    return []


def for_space_change(old: Mapping[str, Any],
                     new: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(node id, command) pairs one change of a Space item calls for."""
    space_id = str((new or old)["space_id"])
    old_node, new_node = old.get("node_id"), new.get("node_id")
    if old.get("state") == LIVE and new.get("state") != LIVE:
        nodes = {str(n) for n in (old_node, new_node) if n}
        return [(node, command("end", space_id)) for node in sorted(nodes)]
    if old_node and new_node and old_node != new_node:
        return [(str(old_node), command("close", space_id, reason="moved"))]
    return []


def _queue_of(node_id: str) -> str | None:
    try:
        return str(MediaNode.get(node_id, consistent_read=True).command_queue_url)
    except DoesNotExist:
        return None


def send(node_id: str, commands: list[dict[str, Any]]) -> None:
    """Puts the commands on the node's queue; raises SendFailed if SQS refuses any. A
    node gone from the registry has no queue and nothing to tell."""
    queue_url = _queue_of(node_id)
    if queue_url is None:
        log.info("node %s is gone: no commands to send it", node_id)
        return
    for start in range(0, len(commands), 10):
        chunk = commands[start:start + 10]
        try:
            result = _sqs().send_message_batch(QueueUrl=queue_url, Entries=[
                {"Id": str(i), "MessageBody": json.dumps(c)} for i, c in enumerate(chunk)])
        except Exception as exc:
            raise SendFailed(f"commands to node {node_id}: {exc}") from exc
        if result.get("Failed"):
            raise SendFailed(f"commands to node {node_id}: {result['Failed']}")


def _images(record: DynamoDBRecord) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    change = record.dynamodb
    if change is None:
        return {}, {}
    return change.old_image or {}, change.new_image or {}


def record_from_members_stream(record: DynamoDBRecord) -> None:
    """One record of the Members table's stream (a Powertools DynamoDBRecord)."""
    old, new = _images(record)
    commands = for_member_change(old, new)
    if not commands:
        return
    space_id = commands[0]["space_id"]
    try:
        node_id = Space.get(space_id, consistent_read=True).node_id
    except DoesNotExist:
        return
    if node_id:
        send(str(node_id), commands)


def record_from_spaces_stream(record: DynamoDBRecord) -> None:
    """One record of the Spaces table's stream (a Powertools DynamoDBRecord)."""
    old, new = _images(record)
    for node_id, body in for_space_change(old, new):
        log.info("space %s: %s to node %s", body["space_id"], body["type"], node_id)
        send(node_id, [body])
