"""Commands from the control plane, on this node's own SQS queue.

The supervisor long-polls the queue from a daemon thread (a 20 s receive must not hold
up the event loop, nor the process's exit); each batch is applied on the event loop,
in order, by forwarding each command to the node's workers (supervisor.py), and is
deleted from the queue once applied. A worker applies a command with `apply`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .identity import NODE_TAG
from .node import Node
from .relay import RelayRoom
from .room import Room
from .tokens import ROLES

log = logging.getLogger("media_node.commands")

WAIT_SECONDS = 20
# Commands are about a live Space; one that waited this long is about a past one.
RETENTION_SECONDS = 300
APPLY_TIMEOUT_SECONDS = 30


class CommandError(ValueError):
    """A message that is not a command this node understands."""


def parse(body: str) -> dict[str, Any]:
    try:
        command = json.loads(body)
    except ValueError:
        raise CommandError("not JSON") from None
    if not isinstance(command, dict):
        raise CommandError("not a JSON object")
    if command.get("v") != 1:
        raise CommandError(f"unknown version {command.get('v')!r}")
    kind = command.get("type")
    if kind not in ("role", "mute", "unmute", "remove", "end"):
        raise CommandError(f"unknown type {kind!r}")
    if not isinstance(command.get("space_id"), str):
        raise CommandError("space_id is missing")
    if kind != "end" and not isinstance(command.get("user_id"), str):
        raise CommandError("user_id is missing")
    if kind == "role" and command.get("role") not in ROLES:
        raise CommandError(f"unknown role {command.get('role')!r}")
    return command


async def apply(node: Node, command: dict[str, Any]) -> None:
    kind, space_id = command["type"], command["space_id"]
    fields = {"command": command}
    if kind in ("end", "remove"):
        node.refuse_earlier_tokens(space_id, command.get("user_id") if kind == "remove" else None)
    room = node.rooms.get(space_id)
    if room is None:
        log.info("command for a Space not open here", extra=fields)
        return
    if isinstance(room, RelayRoom):
        # The owner applies it and its events reach this relay through the feed, in the
        # owner's order; applying it here too would tell the listeners twice.
        return
    if kind == "end":
        log.info("ending the Space", extra=fields)
        await room.end({"type": "space_ended"}, reason="ended")
        return
    user_id = command["user_id"]
    if kind == "remove":
        found = await room.remove_user(user_id, reason="removed")
    elif _superseded(room, kind, user_id, command.get("issued_at")):
        log.info("command superseded by a later one", extra=fields)
        return
    elif kind == "role":
        found = room.set_role(user_id, command["role"])
    else:
        found = room.set_muted(user_id, muted=kind == "mute")
    log.info("command applied" if found else "command for a user not connected", extra=fields)


def _superseded(room: Room, kind: str, user_id: str, issued_at: Any) -> bool:
    """Whether a later command of the same kind was already applied.

    A standard SQS queue may deliver "mute" after the "unmute" that followed it; the
    control plane's `issued_at` restores the order it meant.
    """
    if not isinstance(issued_at, int | float):
        return False
    key = ("role" if kind == "role" else "mute", user_id)
    latest = room.command_times.get(key)
    if latest is not None and issued_at < latest:
        return True
    room.command_times[key] = float(issued_at)
    return False


Applier = Callable[[dict[str, Any]], Awaitable[None]]


class CommandQueue:
    def __init__(self, sqs: Any, name: str, node_id: str) -> None:
        self._sqs = sqs
        self._name = name
        self._node_id = node_id
        self.url = ""
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def create(self) -> str:
        response = self._sqs.create_queue(
            QueueName=self._name,
            Attributes={"MessageRetentionPeriod": str(RETENTION_SECONDS)},
            # In AWS, only the node whose principal this tag names may read or delete it.
            tags={NODE_TAG: self._node_id},
        )
        self.url = response["QueueUrl"]
        log.info("command queue ready", extra={"queue_url": self.url})
        return self.url

    def delete(self) -> None:
        self._sqs.delete_queue(QueueUrl=self.url)
        log.info("command queue deleted", extra={"queue_url": self.url})

    def start(self, apply: Applier, loop: asyncio.AbstractEventLoop) -> None:
        self._thread = threading.Thread(
            target=self._poll, args=(apply, loop), name="command-queue", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _poll(self, apply: Applier, loop: asyncio.AbstractEventLoop) -> None:
        while not self._stopped.is_set():
            try:
                response = self._sqs.receive_message(
                    QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=WAIT_SECONDS
                )
            except Exception:
                if self._stopped.is_set():
                    return
                log.exception("could not receive commands")
                time.sleep(1)
                continue
            messages = response.get("Messages", [])
            if not messages or self._stopped.is_set():
                continue
            future = asyncio.run_coroutine_threadsafe(self._apply_batch(apply, messages), loop)
            try:
                done = future.result(timeout=APPLY_TIMEOUT_SECONDS)
            except Exception:
                log.exception("could not apply commands")
                continue
            self._delete(done)

    async def _apply_batch(self, apply: Applier, messages: list[dict[str, Any]]) -> list[str]:
        """Apply each command in order; the receipts of those to delete from the queue."""
        done = []
        for message in messages:
            try:
                command = parse(message["Body"])
            except CommandError as exc:
                # Redelivering a malformed command would fail the same way forever.
                log.error(
                    "malformed command dropped", extra={"body": message["Body"], "why": str(exc)}
                )
                done.append(message["ReceiptHandle"])
                continue
            try:
                await apply(command)
            except Exception:
                log.exception("command failed", extra={"command": command})
                continue
            done.append(message["ReceiptHandle"])
        return done

    def _delete(self, receipts: list[str]) -> None:
        if not receipts:
            return
        try:
            self._sqs.delete_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(receipts)],
            )
        except Exception:
            log.exception("could not delete applied commands")
