"""The alert pipeline's messages: what happened (a Trigger) and the two kinds of SQS
message that carry it, a fan-out page (read the next page of recipients) and a
delivery page (alert these recipients).

    Spaces stream --triggers.py--> fan-out queue --recipients.py--> delivery queue
                                       ^   (continuation)  |          |
                                       +-------------------+     delivery.py

Each message is self-contained (the trigger carries the handle and title the text
needs), so no stage reads the Space or the user again to word an alert."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

import boto3

from ..platform.config import ConfigError, settings

ALERT, CLEAR = "alert", "clear"
FOLLOWERS, REMINDERS = "followers", "reminders"
_VERSION = 1

# SQS takes ten messages and 256 KiB per SendMessageBatch.
_BATCH_ENTRIES = 10
_BATCH_BYTES = 250 * 1024


class InvalidMessage(ValueError):
    """Not an alert message of a known version and shape: a poison record."""


@dataclass(frozen=True)
class Trigger:
    """`person_id` is hosting (they are the host) or speaking in `space_id`, or, for
    CLEAR, the Space ended and the bar entries about that person go."""

    action: str
    space_id: str
    person_id: str
    host_id: str
    handle: str
    title: str

    @property
    def hosting(self) -> bool:
        return self.person_id == self.host_id

    @property
    def entry_key(self) -> str:
        return f"{self.space_id}#{self.person_id}"

    def text(self) -> str:
        doing = "is hosting a Space" if self.hosting else "is speaking in a Space"
        return f"@{self.handle} {doing}: {self.title}"

    @classmethod
    def parse(cls, raw: Any) -> Trigger:
        if not isinstance(raw, dict):
            raise InvalidMessage("the trigger is not an object")
        values = [raw.get(name) for name in cls.__dataclass_fields__]
        if not all(isinstance(v, str) and v for v in values):
            raise InvalidMessage("the trigger lacks a field")
        trigger = cls(*(str(v) for v in values))
        if trigger.action not in (ALERT, CLEAR):
            raise InvalidMessage(f"unknown action {trigger.action!r}")
        return trigger


@dataclass(frozen=True)
class FanoutPage:
    trigger: Trigger
    source: str
    cursor: dict[str, Any] | None

    def body(self) -> str:
        return json.dumps({"v": _VERSION, "kind": "fanout", "trigger": asdict(self.trigger),
                           "source": self.source, "cursor": self.cursor})


@dataclass(frozen=True)
class DeliveryPage:
    trigger: Trigger
    source: str
    page_id: str
    users: list[str]

    def body(self) -> str:
        return json.dumps({"v": _VERSION, "kind": "delivery", "trigger": asdict(self.trigger),
                           "source": self.source, "page": self.page_id,
                           "users": self.users}, separators=(",", ":"))


def _parse_common(raw: str, kind: str) -> tuple[dict[str, Any], Trigger, str]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise InvalidMessage("the message body is not JSON") from exc
    if not isinstance(body, dict) or body.get("v") != _VERSION or body.get("kind") != kind:
        raise InvalidMessage(f"not a version {_VERSION} {kind} message")
    source = body.get("source")
    if source not in (FOLLOWERS, REMINDERS):
        raise InvalidMessage(f"unknown source {source!r}")
    return body, Trigger.parse(body.get("trigger")), source


def parse_fanout(raw: str) -> FanoutPage:
    body, trigger, source = _parse_common(raw, "fanout")
    cursor = body.get("cursor")
    if cursor is not None and not isinstance(cursor, dict):
        raise InvalidMessage("the cursor is not an object")
    return FanoutPage(trigger, source, cursor)


def parse_delivery(raw: str) -> DeliveryPage:
    body, trigger, source = _parse_common(raw, "delivery")
    page_id, users = body.get("page"), body.get("users")
    if not isinstance(page_id, str) or not page_id:
        raise InvalidMessage("the page id is missing")
    if not isinstance(users, list) or not all(isinstance(u, str) and u for u in users):
        raise InvalidMessage("users must be a list of user ids")
    return DeliveryPage(trigger, source, page_id, users)


@cache
def _sqs() -> Any:
    return boto3.client("sqs")


def _queue(url: str | None, name: str) -> str:
    if url is None:
        raise ConfigError(f"{name} is not set")
    return url


def fanout_queue() -> str:
    return _queue(settings().alert_fanout_queue_url, "ALERT_FANOUT_QUEUE_URL")


def delivery_queue() -> str:
    return _queue(settings().alert_delivery_queue_url, "ALERT_DELIVERY_QUEUE_URL")


class SendFailed(RuntimeError):
    """SQS refused some messages; the record that produced them is retried whole
    (every stage downstream tolerates seeing a message twice)."""


def send(queue_url: str, bodies: list[str]) -> None:
    """Sends every body, as few SendMessageBatch requests as the limits allow."""
    batch: list[str] = []
    size = 0
    for body in bodies:
        length = len(body.encode())
        if batch and (len(batch) == _BATCH_ENTRIES or size + length > _BATCH_BYTES):
            _send_batch(queue_url, batch)
            batch, size = [], 0
        batch.append(body)
        size += length
    if batch:
        _send_batch(queue_url, batch)


def _send_batch(queue_url: str, bodies: list[str]) -> None:
    entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)]
    result = _sqs().send_message_batch(QueueUrl=queue_url, Entries=entries)
    if result.get("Failed"):
        raise SendFailed(f"SQS refused {len(result['Failed'])} messages: {result['Failed']}")
