"""Relays: a Space's room sent to listeners by workers other than the one that mixes it.

One worker (the *owner*, on the Space's node) decodes the speakers, mixes and encodes the
room once. When the Space has more listeners than a worker takes, other workers (on the
same node or, when the node is full, on other nodes) *relay* it: each subscribes to the
owner's *feed* and sends what it gets to listeners of its own, with the same fast path.

A feed is two channels between the owner and one relay worker:

- a WebSocket (the relay connects to the owner worker's `/internal/spaces/{id}/feed`,
  directly within a node, through the owner node's front across nodes), reliable and in
  order, for the room's data-channel events (owner -> relay) and for reactions of the
  relay's listeners (relay -> owner, which broadcasts them to everyone);
- UDP for the encoded listener packets (owner -> relay, each packet once per relay),
  so that a lost packet delays nothing after it. The owner announces its UDP port and
  a random per-feed secret on the WebSocket; the relay sends a small hello datagram with
  the secret every second, from which the owner learns where to send (whatever the
  addresses between them) and that the relay still listens; every media datagram
  carries the secret too, so the relay drops datagrams from anyone else.

The owner's room stays the one source of room events: a relay never applies commands
itself, it forwards the owner's events to its listeners and acts on those that concern
them (a removal closes that user's sessions, the end closes all, a promotion asks the
promoted listener to rejoin: speakers publish into the owner's mix, so they join there).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from ..authority import REMOVED, Authority, AuthorityBook
from ..events import MediaEvents
from ..internal import WS_HEARTBEAT_SECONDS, FeedSource
from ..metrics import Counters
from ..tokens import PUBLISHING_ROLES
from .room import FAREWELL_SECONDS, Room
from .senders import Sender

log = logging.getLogger("media_node.relay")

# Datagrams: hello (relay -> owner) = tag + secret; media (owner -> relay) = tag + secret
# + pts (the owner room's clock, 64 bits so it never wraps) + the Opus payload.
HELLO_TAG = b"PRH1"
MEDIA_TAG = b"PRM1"
SECRET_BYTES = 16
HELLO = struct.Struct(f"!4s{SECRET_BYTES}s")
MEDIA = struct.Struct(f"!4s{SECRET_BYTES}sQ")
PTS = struct.Struct("!Q")
PTS_MASK = (1 << 64) - 1
HELLO_SECONDS = 1.0
# An owner that has had no hello for this long stops the feed: the relay is gone, or
# its datagrams cannot reach the owner (which is worth a loud failure, not silence).
FEED_SILENCE_SECONDS = 10.0
FEED_CONNECT_SECONDS = 10.0
MAX_EMOJI_LENGTH = 16

# What a relayed listener is told when their audio must come from elsewhere.
REJOIN_PROMOTED = "promoted"
REJOIN_RELAY_LOST = "relay_lost"

AnyWebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


class FeedUnavailable(Exception):
    """The owner's feed could not be had (gone, refused, unreachable)."""


class _TextPump:
    """Texts to one WebSocket in order, from code that cannot await (the room's
    broadcasts and the participants' reactions); closes the socket after the last."""

    def __init__(self, ws: AnyWebSocket, name: str) -> None:
        self._ws = ws
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name=name)

    def put(self, text: str) -> None:
        self._queue.put_nowait(text)

    def close(self) -> None:
        self._queue.put_nowait(None)

    async def closed(self) -> None:
        await self._task

    async def _run(self) -> None:
        while (text := await self._queue.get()) is not None:
            try:
                await self._ws.send_str(text)
            except (ConnectionError, RuntimeError):
                break
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._ws.close()


# -- the owner's side ------------------------------------------------------------------


class FeedEndpoint(asyncio.DatagramProtocol):
    """The worker's one UDP socket for the feeds it sends: it hears the relays' hellos
    and sends their media datagrams."""

    def __init__(self) -> None:
        self._transport: asyncio.DatagramTransport | None = None
        self._feeds: dict[bytes, RelayFeed] = {}
        self.port = 0

    @classmethod
    async def open(cls, host: str) -> FeedEndpoint:
        loop = asyncio.get_running_loop()
        transport, endpoint = await loop.create_datagram_endpoint(cls, local_addr=(host, 0))
        endpoint._transport = transport
        endpoint.port = transport.get_extra_info("sockname")[1]
        return endpoint

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) != HELLO.size:
            return
        tag, secret = HELLO.unpack(data)
        feed = self._feeds.get(secret) if tag == HELLO_TAG else None
        if feed is not None:
            feed.heard_from(addr)

    def add(self, feed: RelayFeed) -> None:
        self._feeds[feed.secret] = feed

    def discard(self, feed: RelayFeed) -> None:
        self._feeds.pop(feed.secret, None)

    def send(self, data: bytes, address: tuple[str, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(data, address)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class RelayFeed:
    """The owner's end of one relay's subscription: a `RelayOutlet` of its room."""

    def __init__(self, endpoint: FeedEndpoint, ws: web.WebSocketResponse, space_id: str) -> None:
        self.secret = secrets.token_bytes(SECRET_BYTES)
        self.address: tuple[str, int] | None = None
        self.heard_at = time.monotonic()
        self._endpoint = endpoint
        self._prefix = MEDIA_TAG + self.secret
        self._pump = _TextPump(ws, f"feed-{space_id}")

    def heard_from(self, address: tuple[str, int]) -> None:
        if address != self.address:
            log.info("relay heard", extra={"address": list(address)})
        self.address = address
        self.heard_at = time.monotonic()

    def send_packet(self, payload: bytes, pts: int) -> None:
        # Until the relay's first hello arrives there is nowhere to send.
        if self.address is not None:
            self._endpoint.send(self._prefix + PTS.pack(pts & PTS_MASK) + payload, self.address)

    def send_text(self, text: str) -> None:
        self._pump.put(text)

    def close(self) -> None:
        self._pump.close()

    async def closed(self) -> None:
        await self._pump.closed()


async def serve_feed(
    request: web.Request, room: Room, endpoint: FeedEndpoint, hello: dict[str, Any]
) -> web.WebSocketResponse:
    """A relay's subscription to `room`, for as long as the relay keeps it."""
    ws = web.WebSocketResponse(heartbeat=WS_HEARTBEAT_SECONDS)
    await ws.prepare(request)
    feed = RelayFeed(endpoint, ws, room.space_id)
    endpoint.add(feed)
    await ws.send_json(
        {**hello, "type": "feed", "udp_port": endpoint.port, "secret": feed.secret.hex()}
    )
    # From here every broadcast of the room reaches the relay, after the hello.
    room.relays.append(feed)
    log.info("relay subscribed", extra={"space_id": room.space_id})
    watchdog = asyncio.create_task(_close_when_silent(feed, ws), name=f"feed-watch-{room.space_id}")
    try:
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                _from_relay(room, message.data)
    finally:
        watchdog.cancel()
        endpoint.discard(feed)
        if feed in room.relays:
            room.relays.remove(feed)
        feed.close()
        log.info("relay unsubscribed", extra={"space_id": room.space_id})
        if not room.closed and not room.participants and not room.relays:
            await room.close()
    return ws


async def _close_when_silent(feed: RelayFeed, ws: web.WebSocketResponse) -> None:
    while True:
        await asyncio.sleep(HELLO_SECONDS)
        if time.monotonic() - feed.heard_at > FEED_SILENCE_SECONDS:
            log.error("relay silent: its hellos no longer arrive; feed stopped")
            await ws.close()
            return


def _from_relay(room: Room, text: str) -> None:
    """A relay passes up its listeners' reactions (it applied their rate limit)."""
    try:
        message = json.loads(text)
    except ValueError:
        return
    if not isinstance(message, dict) or message.get("type") != "reaction":
        return
    user_id, emoji = message.get("user_id"), message.get("emoji")
    if isinstance(user_id, str) and isinstance(emoji, str) and 0 < len(emoji) <= MAX_EMOJI_LENGTH:
        room.react(user_id, emoji)


# -- the relay's side -----------------------------------------------------------------


class _FeedReceiver(asyncio.DatagramProtocol):
    def __init__(self, room: RelayRoom, secret: bytes) -> None:
        self._room = room
        self._secret = secret

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) <= MEDIA.size:
            return
        tag, secret, pts = MEDIA.unpack_from(data)
        if tag == MEDIA_TAG and hmac.compare_digest(secret, self._secret):
            self._room.deliver(data[MEDIA.size :], pts)


class Book(Protocol):
    """What the worker knows of its participants' authority (node.py, authority.py),
    which a relay learns from the owner: the control plane's commands reach only the
    owner's node."""

    book: AuthorityBook

    def adopt_book(self, space_id: str, book: dict[str, Any]) -> None: ...


class RelayRoom(Room):
    """A Space relayed by this worker: listeners only, packets from the owner's feed."""

    def __init__(
        self,
        space_id: str,
        events: MediaEvents,
        counters: Counters,
        on_closed: Callable[[Room], None],
        sender: Sender,
        source: FeedSource,
        node: Book,
        bind_host: str,
    ) -> None:
        super().__init__(space_id, events, counters, on_closed, sender)
        self.source = source
        self._node = node
        self._bind_host = bind_host
        self._speaking: set[str] = set()
        self._feed_pts = 0
        self._http: aiohttp.ClientSession | None = None
        self._up: _TextPump | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed: asyncio.Task[None] | None = None
        self._finished = False

    @property
    def origin(self) -> str | None:
        return self.source.origin

    async def ready(self) -> None:
        """Subscribed to the owner's feed (once, whoever asks first); FeedUnavailable,
        with the room closed, if the feed cannot be had."""
        if self._subscribed is None:
            self._subscribed = asyncio.create_task(self._subscribe(), name=f"sub-{self.space_id}")
        try:
            await asyncio.shield(self._subscribed)
        except FeedUnavailable:
            await self.close()
            raise

    async def _subscribe(self) -> None:
        loop = asyncio.get_running_loop()
        timeout = aiohttp.ClientTimeout(total=None, connect=FEED_CONNECT_SECONDS)
        self._http = aiohttp.ClientSession(timeout=timeout)
        try:
            ws = await self._http.ws_connect(
                self.source.url, headers=self.source.headers, heartbeat=WS_HEARTBEAT_SECONDS
            )
            hello = await ws.receive_json(timeout=FEED_CONNECT_SECONDS)
            if not isinstance(hello, dict) or hello.get("type") != "feed":
                raise FeedUnavailable(f"not a feed: {hello!r}")
            secret = bytes.fromhex(hello["secret"])
            host = urlsplit(self.source.url).hostname or "127.0.0.1"
            (family, _, _, _, owner), *_ = await loop.getaddrinfo(
                host, int(hello["udp_port"]), type=socket.SOCK_DGRAM
            )
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _FeedReceiver(self, secret), local_addr=(self._bind_host, 0), family=family
            )
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError) as exc:
            await self._http.close()
            raise FeedUnavailable(f"{type(exc).__name__}: {exc}") from None
        self._udp = udp
        self._up = _TextPump(ws, f"up-{self.space_id}")
        self._speaking = set(hello.get("speaking", []))
        book = hello.get("authority")
        self._node.adopt_book(self.space_id, book if isinstance(book, dict) else {})
        hello_datagram = HELLO.pack(HELLO_TAG, secret)
        self._tasks = [
            asyncio.create_task(self._hello(udp, hello_datagram, owner), name="feed-hello"),
            asyncio.create_task(self._read(ws), name=f"feed-{self.space_id}"),
        ]
        log.info("relaying", extra={"space_id": self.space_id, "origin": self.origin})

    async def _hello(
        self, udp: asyncio.DatagramTransport, datagram: bytes, owner: tuple[Any, ...]
    ) -> None:
        while True:
            udp.sendto(datagram, owner)
            await asyncio.sleep(HELLO_SECONDS)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            try:
                event = json.loads(message.data)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            self._forward(message.data, event)
            await self._act_on(event)
            if self._finished or self.closed:
                return
        if self.closed:
            # Closed here (its last listener left), which is what ended the feed.
            return
        # The owner went away without ending the Space (its worker or node died, or it
        # stopped the feed): the listeners rejoin through the API, which places anew.
        log.warning("feed lost", extra={"space_id": self.space_id, "origin": self.origin})
        self._notify({"type": "rejoin", "reason": REJOIN_RELAY_LOST})
        await self._finish(REJOIN_RELAY_LOST)

    def _forward(self, text: str, event: dict[str, Any]) -> None:
        """The owner's event to every listener here; to one promoted to the stage, in
        its place, `rejoin`: a speaker publishes into the owner's mix, so the client
        moves there (with its new role, from the API), and must not take the event as
        leave to open its microphone on this connection, which cannot carry it."""
        promoted = event.get("user_id") if event.get("type") == "role_changed" and \
            event.get("role") in PUBLISHING_ROLES else None
        for participant in list(self.participants.values()):
            if participant.user_id == promoted:
                participant.send(
                    {"type": "rejoin", "reason": REJOIN_PROMOTED, "role": event["role"]}
                )
            else:
                participant.send_text(text)

    async def _act_on(self, event: dict[str, Any]) -> None:
        kind, user_id = event.get("type"), event.get("user_id")
        if kind == "speaking_started" and isinstance(user_id, str):
            self._speaking.add(user_id)
        elif kind == "speaking_stopped" and isinstance(user_id, str):
            self._speaking.discard(user_id)
        elif kind == "removed" and isinstance(user_id, str):
            known = self._node.book.known(self.space_id, user_id)
            self._node.book.learn(self.space_id, user_id, Authority(
                known.version + 1 if known else 0, REMOVED, False))
            await self._remove_sessions(user_id)
        elif kind == "space_ended":
            self._node.book.end(self.space_id)
            await self._finish("ended")
        elif kind == "node_closing":
            await self._finish("node_closing")

    async def _remove_sessions(self, user_id: str) -> None:
        found = self.of_user(user_id)
        if found:
            await asyncio.sleep(FAREWELL_SECONDS)
            for participant in found:
                await self.remove(participant, reason="removed")

    async def apply_authority(self, user_id: str, authority: Authority) -> None:
        """A relay holds listeners only: a removed user goes, and one who may now
        publish is told to join where the Space is mixed."""
        if authority.removed:
            for participant in self.of_user(user_id):
                participant.send({"type": "removed", "user_id": user_id})
            await self._remove_sessions(user_id)
        elif authority.role in PUBLISHING_ROLES:
            for participant in self.of_user(user_id):
                participant.send(
                    {"type": "rejoin", "reason": REJOIN_PROMOTED, "role": authority.role})

    async def lose_feed(self) -> None:
        """The Space's owner is not its origin any more (it moved): as for a lost feed,
        the listeners rejoin through the API."""
        if self._finished or self.closed:
            return
        log.warning("the Space moved from its origin", extra={
            "space_id": self.space_id, "origin": self.origin})
        self._notify({"type": "rejoin", "reason": REJOIN_RELAY_LOST})
        await self._finish(REJOIN_RELAY_LOST)

    def _notify(self, message: dict[str, Any]) -> None:
        for participant in self.participants.values():
            participant.send(message)

    async def _finish(self, reason: str) -> None:
        """Close every local session, after the notice that says why had time to leave."""
        self._finished = True
        await asyncio.sleep(FAREWELL_SECONDS)
        for participant in list(self.participants.values()):
            await self.remove(participant, reason)
        await self.close()

    def speaking_users(self) -> list[str]:
        return sorted(self._speaking)

    def react(self, user_id: str, emoji: str) -> None:
        # Up to the owner, which broadcasts it to the whole Space, this relay included.
        if self._up is not None:
            self._up.put(json.dumps({"type": "reaction", "user_id": user_id, "emoji": emoji}))

    def deliver(self, payload: bytes, pts: int) -> None:
        """One packet of the owner's listener mix, to every connected listener here."""
        self._feed_pts = pts
        sent = self.sender.relayed(self, payload, pts)
        self.counters.packets_out += sent

    def tick(self) -> None:
        # Nothing to mix: the clock only keeps the streams' routes and reports fresh (a
        # share of the streams each tick, as in a room that mixes).
        self._ticks += 1
        self._upkeep_streams(self._feed_pts)

    async def close(self) -> None:
        if self.closed:
            return
        await super().close()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if self._up is not None:
            self._up.close()
            with contextlib.suppress(Exception):
                await self._up.closed()
        if self._udp is not None:
            self._udp.close()
        if self._http is not None:
            await self._http.close()
