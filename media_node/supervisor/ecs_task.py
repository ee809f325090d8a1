"""The node's ECS task: protected from scale-in while it holds rooms, and its stop
noticed before SIGTERM.

ECS chooses which tasks a scale-in stops; a task that holds rooms asks the ECS agent to
protect it (`PUT ${ECS_AGENT_URI}/task-protection/v1/state`) and gives the protection
up once it holds none, so only empty nodes are taken away. A deploy or a scale-in marks
the task's `DesiredStatus` STOPPED in its metadata when it begins the load balancer's
deregistration delay, and sends SIGTERM only after it: the node starts draining as soon
as it reads that, while its clients can still reach it to be told to join elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp

log = logging.getLogger("media_node.ecs_task")

# The protection the agent grants lapses after this; the node renews it well before.
PROTECTION_MINUTES = 60
RENEW_SECONDS = 20 * 60
CHECK_SECONDS = 2.0
STATUS_SECONDS = 2.0
_TIMEOUT = aiohttp.ClientTimeout(total=5)


class TaskProtection:
    def __init__(self, agent_uri: str) -> None:
        self._url = agent_uri.rstrip("/") + "/task-protection/v1/state"
        self._protected: bool | None = None
        self._set_at = 0.0

    async def set(self, protected: bool) -> bool:
        """Ask the agent; whether it agreed (a failure is logged and tried again)."""
        body: dict[str, object] = {"ProtectionEnabled": protected}
        if protected:
            body["ExpiresInMinutes"] = PROTECTION_MINUTES
        try:
            async with aiohttp.ClientSession(timeout=_TIMEOUT) as http, \
                    http.put(self._url, json=body) as response:
                if response.status != 200:
                    log.warning("task protection refused", extra={
                        "status": response.status, "body": await response.text()})
                    return False
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("task protection failed", extra={"why": repr(exc)})
            return False
        self._protected, self._set_at = protected, time.monotonic()
        log.info("task protection", extra={"protected": protected})
        return True

    async def run(self, holds_rooms: Callable[[], bool]) -> None:
        while True:
            wanted = holds_rooms()
            stale = wanted and time.monotonic() - self._set_at > RENEW_SECONDS
            if wanted != self._protected or stale:
                await self.set(wanted)
            await asyncio.sleep(CHECK_SECONDS)


async def watch_for_stop(metadata_uri: str, stopping: Callable[[], None]) -> None:
    """Calls `stopping` once the task's metadata says ECS wants it stopped."""
    url = metadata_uri.rstrip("/") + "/task"
    while True:
        try:
            async with aiohttp.ClientSession(timeout=_TIMEOUT) as http, \
                    http.get(url) as response:
                task = await response.json(content_type=None)
            if isinstance(task, dict) and task.get("DesiredStatus") == "STOPPED":
                log.info("ECS is stopping the task: draining")
                stopping()
                return
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("could not read the task's metadata", extra={"why": repr(exc)})
        await asyncio.sleep(STATUS_SECONDS)
