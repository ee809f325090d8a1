"""A participant that keeps its audio: it joins a Space through the API, connects to the
node the API names, and when the audio is gone (no frame for LOSS_SECONDS, a listener
receives fifty a second, or the transport failing) joins again by itself, through the
API, which places the Space on a healthy node. Retries back off with jitter, so a lost
node does not turn into a storm of joins. A speaker comes back as a speaker, muted as
they were: the API's answer says both. An end or a removal is not a loss: a participant
that was told stops, and so does one the API refuses for good."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from peer.session import MediaSession, Refused
from peer.tones import ToneTrack

PUBLISHING_ROLES = ("host", "co_host", "speaker")
# Two seconds without audio means it is gone (a listener gets a frame every 20 ms).
LOSS_SECONDS = 2.0
# The first attempt to join again waits up to this long, so that the listeners of a
# node that died, who all notice at once, do not all join at once.
FIRST_ATTEMPT_SPREAD_SECONDS = 0.5
# Waits before the second, third... attempt (each jittered by +-50%).
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)
# How long a participant keeps trying before it gives up.
GIVE_UP_SECONDS = 120.0
WATCH_SECONDS = 0.1
# The API's answers that mean "not any more", which no retry changes.
FINAL = {(403, "removed"), (403, "blocked"), (409, "space_not_live"), (404, "space_not_found")}


def _credentials_last(servers: list[dict[str, Any]], now: float) -> bool:
    """Whether every TURN credential in `servers` is good for another minute. They are
    TURN REST API usernames, `<expiry epoch>:<user>` (docs/media-contract.md); a server
    with a username of another form counts as not known to last."""
    for server in servers:
        username = server.get("username")
        if username:
            expiry = str(username).split(":", 1)[0]
            if not expiry.isdigit() or int(expiry) < now + 60:
                return False
    return True


@dataclass
class _Ahead:
    """A session prepared before the API's answer, and what it was prepared for."""

    task: asyncio.Task[MediaSession]
    ice_servers: list[dict[str, Any]]
    publishing: bool

    def fits(self, ice_servers: list[dict[str, Any]], publishing: bool) -> bool:
        """The same servers (their credentials may be newer) and the same microphone."""
        def urls(servers: list[dict[str, Any]]) -> list[Any]:
            return [server.get("urls") for server in servers]
        return publishing == self.publishing and urls(ice_servers) == urls(self.ice_servers)

    async def discard(self) -> None:
        if not self.task.done():
            self.task.cancel()
        try:
            session = await self.task
        except BaseException:  # cancelled or failed: nothing to close
            return
        await session.close(leave=False)


class Stopped(Exception):
    """The participant is done: told the Space ended, removed, or refused for good."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Outage:
    """One loss of audio: when it was noticed, when audio came back (monotonic)."""

    noticed_at: float
    why: str
    restored_at: float | None = None
    attempts: int = 0


@dataclass
class Participant:
    api: str
    bearer: Callable[[], str]
    space_id: str
    tone_hz: float | None = None
    on_event: Callable[[dict[str, Any]], None] | None = None
    loss_seconds: float = LOSS_SECONDS
    give_up_seconds: float = GIVE_UP_SECONDS
    role: str = "listener"
    muted: bool = False
    # False: audio is only counted as it arrives, not decoded (MediaSession).
    decode: bool = True
    node_id: str | None = None
    user_id: str | None = None
    session: MediaSession | None = None
    stopped: str | None = None
    outages: list[Outage] = field(default_factory=list)
    joins: int = 0
    # Joins whose session was prepared while the API answered.
    joins_prepared_ahead: int = 0
    # How long each call to the API's join took (seconds), failed ones included.
    api_seconds: list[float] = field(default_factory=list)
    _connected_at: float = 0.0
    _watcher: asyncio.Task[None] | None = None
    _ice_servers: list[dict[str, Any]] | None = None
    _rejoin: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def may_publish(self) -> bool:
        return self.role in PUBLISHING_ROLES

    # -- joining -------------------------------------------------------------------

    async def _api_join(self) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.bearer()}"}
        timeout = aiohttp.ClientTimeout(total=10)
        asked = time.monotonic()
        async with aiohttp.ClientSession(timeout=timeout) as http, http.post(
                f"{self.api}/spaces/{self.space_id}/join", headers=headers) as response:
            body: dict[str, Any] = await response.json(content_type=None)
            self.api_seconds.append(time.monotonic() - asked)
            if response.status == 200:
                return body
            code = body.get("error") if isinstance(body, dict) else None
            if (response.status, code) in FINAL:
                raise Stopped(str(code))
            raise Refused(response.status, str(body))

    def _new_session(self, ice_servers: list[dict[str, Any]], publishing: bool) -> MediaSession:
        microphone = ToneTrack(self.tone_hz) if self.tone_hz and publishing else None
        return MediaSession(ice_servers, microphone, self._message, decode=self.decode)

    def _prepare_ahead(self) -> _Ahead | None:
        """The next session, its offer made while the API answers (a certificate, ICE
        gathering and a TURN allocation: a third of a second, more in a crowd), when the
        last join's ICE servers are still good."""
        servers = self._ice_servers
        if servers is None or not _credentials_last(servers, time.time()):
            return None
        publishing = self.may_publish

        async def prepare() -> MediaSession:
            session = self._new_session(servers, publishing)
            try:
                await session.offer()
            except BaseException:
                await session.close(leave=False)
                raise
            return session

        return _Ahead(asyncio.create_task(prepare()), servers, publishing)

    async def _connect(self, ahead: _Ahead | None = None) -> None:
        """One join: the API, then the node it names."""
        ahead = ahead or self._prepare_ahead()
        try:
            joined = await self._api_join()
            if joined.get("transport") == "hls":
                # The Space answers this listener with HLS (docs/hls.md): a player's job.
                raise Stopped("hls")
        except BaseException:
            if ahead is not None:
                await ahead.discard()
            raise
        self.role, self.muted = joined["role"], bool(joined["muted"])
        self.node_id = joined["node_id"]
        servers = joined["media"]["ice_servers"]
        session: MediaSession | None = None
        if ahead is not None:
            if ahead.fits(servers, self.may_publish):
                with contextlib.suppress(Exception):
                    session = await ahead.task
                    self.joins_prepared_ahead += 1
            else:
                await ahead.discard()
        if session is None:
            session = self._new_session(servers, self.may_publish)
        self._ice_servers = servers
        try:
            await session.open(joined["media"]["url"], joined["token"])
        except BaseException:
            await session.close(leave=False)
            raise
        self.session = session
        self.joins += 1
        self._connected_at = time.monotonic()

    async def start(self) -> None:
        """Join and keep the audio up until `stop` (or the participant is stopped)."""
        await self._connect()
        self._watcher = asyncio.create_task(self._watch(), name=f"watch-{self.space_id}")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self.session is not None:
            await self.session.close()

    # -- what the node says ----------------------------------------------------------

    def _message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "welcome":
            self.user_id = message.get("user_id")
        mine = message.get("user_id") == self.user_id
        if kind == "space_ended":
            self.stopped = "ended"
        elif kind == "removed" and mine:
            self.stopped = "removed"
        elif kind in ("rejoin", "node_closing"):
            # Told to join elsewhere: not an outage, but the same way back.
            self._rejoin.set()
        elif kind == "role_changed" and mine:
            self.role = str(message.get("role"))
            if self.may_publish and self.tone_hz and self.session is not None:
                self.session.speak(ToneTrack(self.tone_hz))
        elif kind in ("muted", "unmuted") and mine:
            self.muted = kind == "muted"
        if self.on_event is not None:
            self.on_event(message)

    # -- keeping the audio up -------------------------------------------------------------

    def _lost(self, now: float) -> str | None:
        session = self.session
        if session is None:
            return "no session"
        if self._rejoin.is_set():
            return "told to rejoin"
        if session.gone:
            return "transport failed"
        if session.silent_for(now, self._connected_at) > self.loss_seconds:
            return "no audio"
        return None

    async def _watch(self) -> None:
        while self.stopped is None:
            await asyncio.sleep(WATCH_SECONDS)
            if self.stopped is not None:
                break
            why = self._lost(time.monotonic())
            if why is not None:
                await self._recover(why)
        if self.session is not None:
            await self.session.close(leave=False)

    async def _recover(self, why: str) -> None:
        outage = Outage(time.monotonic(), why)
        self.outages.append(outage)
        self._rejoin.clear()
        old, self.session = self.session, None
        if old is not None:
            # The node may be gone: leave without waiting on it.
            asyncio.create_task(old.close(leave=why == "told to rejoin"))  # noqa: RUF006
        deadline = outage.noticed_at + self.give_up_seconds
        # The first attempt's session is prepared while it waits its turn.
        ahead = self._prepare_ahead()
        try:
            if why != "told to rejoin":
                await asyncio.sleep(random.uniform(0, FIRST_ATTEMPT_SPREAD_SECONDS))
            while self.stopped is None:
                outage.attempts += 1
                attempt, ahead = ahead, None
                try:
                    await self._connect(attempt)
                    outage.restored_at = time.monotonic()
                    return
                except Stopped as exc:
                    self.stopped = exc.reason
                    return
                except (Refused, aiohttp.ClientError, TimeoutError, OSError, KeyError,
                        ValueError):
                    pass
                if time.monotonic() > deadline:
                    self.stopped = "gave_up"
                    return
                step = BACKOFF_SECONDS[min(outage.attempts - 1, len(BACKOFF_SECONDS) - 1)]
                await asyncio.sleep(step * random.uniform(0.5, 1.5))
        finally:
            if ahead is not None:
                await ahead.discard()

    # -- what it heard -----------------------------------------------------------------

    def heard_since(self, since: float) -> np.ndarray:
        if self.session is None:
            return np.zeros(0)
        return self.session.heard_since(since)
