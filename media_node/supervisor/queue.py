"""The node's own SQS command queue, in the supervisor.

The supervisor long-polls the queue from a daemon thread (a 20 s receive must not hold
up the event loop, nor the process's exit); each batch is applied on the event loop, in
order, by forwarding each command to the node's workers (main.py), and is deleted from
the queue once applied. What a command says is commands.py's."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..commands import CommandError, parse
from ..identity import NODE_TAG

log = logging.getLogger("media_node.commands")

WAIT_SECONDS = 20
# Commands are about a live Space; one that waited this long is about a past one.
RETENTION_SECONDS = 300
APPLY_TIMEOUT_SECONDS = 30


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
