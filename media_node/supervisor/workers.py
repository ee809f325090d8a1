"""The supervisor's worker processes, and what it knows of each: its rooms and load.

The supervisor learns a worker's rooms from its status (polled every second) and,
between two polls, from the joins it has just sent there: a join is *reserved* on the
worker while it is in flight and after it succeeded until a status taken later shows
it. So two joins at once both count, and the limit on listeners per worker holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ..internal import STATUS_PATH, WORKER_SECRET_HEADER
from ..metrics import Counters

log = logging.getLogger("media_node.workers")

# The folder that holds the media_node package, whatever the supervisor's cwd.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]
START_SECONDS = 60.0


@dataclass
class RoomView:
    listeners: int
    participants: int
    relay: bool
    origin: str | None
    # (session id, user id, role) of each connected participant.
    connected: tuple[tuple[str, str, str], ...] = ()


@dataclass
class Reservation:
    space_id: str
    listener: bool
    relay: bool
    origin: str | None
    # The supervisor's number for this join (the admission header the worker keeps).
    admission: int
    # monotonic time the worker answered 201; None while the join is in flight.
    done_at: float | None = None


@dataclass
class WorkerProcess:
    index: int
    secret: str
    listening: socket.socket
    process: asyncio.subprocess.Process | None = None
    ready: bool = False
    rooms: dict[str, RoomView] = field(default_factory=dict)
    snapshot_at: float = 0.0
    reservations: list[Reservation] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)
    cpu: float = 0.0
    # What the worker's earlier lives counted: totals never go back when it restarts.
    retired: Counters = field(default_factory=Counters)
    retired_cpu: float = 0.0
    # The read end of the pipe the worker writes its last status to as it stops.
    last_status: int | None = None

    @classmethod
    def bind(cls, index: int, secret: str) -> WorkerProcess:
        # The supervisor makes the socket and hands it down: no port to guess or race
        # for, and a restarted worker serves on the same one.
        listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listening.bind(("127.0.0.1", 0))
        listening.listen(128)
        return cls(index, secret, listening)

    @property
    def port(self) -> int:
        return int(self.listening.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {WORKER_SECRET_HEADER: self.secret}

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self, env: dict[str, str], http: aiohttp.ClientSession) -> None:
        fd = self.listening.fileno()
        self._close_last_status()
        self.last_status, status_fd = os.pipe()
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "media_node.worker",
                cwd=PACKAGE_PARENT,
                env={**env, "WORKER_INDEX": str(self.index), "WORKER_FD": str(fd),
                     "WORKER_STATUS_FD": str(status_fd)},
                pass_fds=(fd, status_fd),
                stdin=asyncio.subprocess.PIPE,
                # Its own session: a terminal's Ctrl-C reaches the supervisor only, which
                # then drains the workers itself, once.
                start_new_session=True,
            )
        finally:
            # Only the worker holds the write end: its exit is the pipe's end of file.
            os.close(status_fd)
        assert self.process.stdin is not None
        self.process.stdin.write(f"{self.secret}\n".encode())
        await self.process.stdin.drain()
        deadline = time.monotonic() + START_SECONDS
        while not await self.poll(http):
            if self.process.returncode is not None:
                raise RuntimeError(f"worker {self.index} exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker {self.index} did not start")
            await asyncio.sleep(0.1)
        self.ready = True
        log.info("worker ready", extra={"worker": self.index, "pid": self.pid})

    async def poll(self, http: aiohttp.ClientSession) -> bool:
        """Take the worker's status; False if it does not answer."""
        asked_at = time.monotonic()
        try:
            async with http.get(self.url + STATUS_PATH, headers=self.headers) as response:
                if response.status != 200:
                    return False
                status: dict[str, Any] = await response.json()
        except (aiohttp.ClientError, TimeoutError):
            return False
        self.absorb(status, asked_at)
        return True

    def absorb(self, status: dict[str, Any], asked_at: float) -> None:
        """The worker's status (worker/rooms.py's Rooms.status), as it was when
        asked at `asked_at`."""
        self.rooms = {
            space_id: RoomView(
                listeners=int(room["listeners"]),
                participants=int(room["participants"]),
                relay=bool(room["relay"]),
                origin=room.get("origin"),
                connected=tuple((str(s), str(u), str(r))
                                for s, u, r in room.get("connected", ())),
            )
            for space_id, room in status["rooms"].items()
        }
        self.snapshot_at = asked_at
        # Joins answered before this status was asked for are in it, and so is a join
        # the worker admitted while the status was on its way, though its answer came
        # after: counting that one twice would refuse a join to a worker with room.
        present = {int(a) for room in status["rooms"].values()
                   for a in room.get("admissions", ())}
        self.reservations = [
            r for r in self.reservations
            if (r.done_at is None or r.done_at > asked_at) and r.admission not in present
        ]
        self.counters = Counters.parse(status["counters"])
        self.cpu = float(status["cpu_seconds"])

    def died(self) -> list[tuple[str, str, str, str]]:
        """Its rooms died with it: forget them, keep what it counted (to its very end
        when it stopped in good order and left its last status). Returns the sessions
        that were connected as last seen, (space id, session id, user id, role): those
        a worker that stopped in good order reported leaving are not among them."""
        last = self._read_last_status()
        if last is not None:
            try:
                self.absorb(last, time.monotonic())
            except (KeyError, TypeError, ValueError):
                log.warning("a worker's last status did not read", extra={"worker": self.index})
        lost = [(space_id, *session) for space_id, view in self.rooms.items()
                for session in view.connected]
        self.ready = False
        self.rooms = {}
        self.reservations = []
        self.retired = self.totals()
        self.retired_cpu += self.cpu
        self.counters = Counters()
        self.cpu = 0.0
        return lost

    def _read_last_status(self) -> dict[str, Any] | None:
        """Called once the process has exited, so the read meets the end of file."""
        if self.last_status is None:
            return None
        chunks = []
        with contextlib.suppress(OSError):
            while chunk := os.read(self.last_status, 65536):
                chunks.append(chunk)
        self._close_last_status()
        try:
            status = json.loads(b"".join(chunks))
        except ValueError:
            return None  # it died without a word (or with half of one)
        return status if isinstance(status, dict) else None

    def _close_last_status(self) -> None:
        if self.last_status is not None:
            os.close(self.last_status)
            self.last_status = None

    def totals(self) -> Counters:
        return self.retired + self.counters

    def cpu_seconds(self) -> float:
        return self.retired_cpu + self.cpu

    def signal(self, signum: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    # -- load, as placement sees it ---------------------------------------------------

    def reserve(
        self, space_id: str, listener: bool, relay: bool, origin: str | None, admission: int
    ) -> Reservation:
        reservation = Reservation(space_id, listener, relay, origin, admission)
        self.reservations.append(reservation)
        return reservation

    def settle(self, reservation: Reservation, admitted: bool) -> None:
        if admitted:
            reservation.done_at = time.monotonic()
        elif reservation in self.reservations:
            self.reservations.remove(reservation)

    def view(self, space_id: str) -> RoomView | None:
        """The Space's room on this worker as it is, or is about to be."""
        room = self.rooms.get(space_id)
        pending = [r for r in self.reservations if r.space_id == space_id]
        if room is None and not pending:
            return None
        if room is None:
            room = RoomView(0, 0, pending[0].relay, pending[0].origin)
        return RoomView(
            listeners=room.listeners + sum(1 for r in pending if r.listener),
            participants=room.participants + len(pending),
            relay=room.relay,
            origin=room.origin,
        )

    def participants(self) -> int:
        return sum(r.participants for r in self.rooms.values()) + len(self.reservations)

    def spaces(self) -> set[str]:
        return set(self.rooms) | {r.space_id for r in self.reservations}


def worker_env(base: dict[str, str] | os._Environ[str], **overrides: str | None) -> dict[str, str]:
    """The workers' environment: the node's, with what the supervisor resolved at start."""
    env = dict(base)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env
