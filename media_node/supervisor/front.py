"""The node's front: its public HTTP port, in the supervisor, in front of its workers.

It checks join tokens, places each join on a worker and forwards the request there
(PATCH and DELETE go where the session id says), forwards requests meant for another
node to that node inside the VPC, and proxies other nodes' feed subscriptions to the
worker that owns the Space. Placement, for a Space (docs/media-contract.md):

- speakers (host, co-host, speaker) join the worker that owns the Space, whatever the
  node's load (a Space has at most 13); the first to join a Space (a speaker or not)
  makes the least loaded worker its owner, if the node is below CAPACITY;
- a listener joins the owner while it has fewer than WORKER_LISTENERS listeners of the
  Space, else a worker already relaying the Space with room left (filled one at a time),
  else the least loaded worker not yet holding the Space, which becomes a relay;
- a listener whose token names an origin (this node relays a Space owned elsewhere)
  joins a relay worker the same way;
- listeners beyond the node's CAPACITY, or with no worker left for the Space: 503
  `full`; the Space is then listed full in the registry, and the control plane places
  further listeners on another node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from ..authority import AuthorityBook
from ..config import Config
from ..errors import NodeError, json_errors
from ..internal import (
    ADMISSION_HEADER,
    AUTHORITY_HEADER,
    FEED_HEADER,
    FEED_PATH,
    FORWARDED_HEADER,
    MAX_SDP_BYTES,
    REPLACED_PATH,
    SESSION_PATH,
    SESSIONS_PATH,
    WS_HEARTBEAT_SECONDS,
    FeedSource,
)
from ..sessions import address_of
from ..tokens import JoinClaims, TokenVerifier
from .workers import WorkerProcess

log = logging.getLogger("media_node.front")

# Headers a forwarded answer keeps: the SDP, its type and the session's address.
ANSWER_HEADERS = ("Content-Type", "Location")
PEER_CACHE_SECONDS = 5.0


class Peers:
    """Other nodes' private URLs, read from the registry (cached briefly)."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self._cache: dict[str, tuple[float, str | None]] = {}

    async def private_url(self, node_id: str) -> str | None:
        cached = self._cache.get(node_id)
        if cached is not None and time.monotonic() - cached[0] < PEER_CACHE_SECONDS:
            return cached[1]
        try:
            response = await asyncio.to_thread(
                self._table.get_item, Key={"node_id": node_id}, ConsistentRead=True
            )
        except Exception:
            log.exception("could not read the registry", extra={"peer": node_id})
            return None
        url = response.get("Item", {}).get("private_url")
        self._cache[node_id] = (time.monotonic(), str(url) if url else None)
        return str(url) if url else None


@dataclass(frozen=True)
class Placement:
    worker: WorkerProcess
    # Where the worker gets the Space from, if it is to relay it.
    feed: FeedSource | None


def listener_target(
    space_id: str, workers: Iterable[WorkerProcess], limit: int
) -> tuple[WorkerProcess, bool] | None:
    """The worker a new listener of the Space goes to, and whether it relays there;
    None if the Space's workers are full and no worker is free to relay it."""
    alive = [w for w in workers if w.ready]
    views = {w.index: view for w in alive if (view := w.view(space_id)) is not None}
    owner = next((w for w in alive if w.index in views and not views[w.index].relay), None)
    if owner is not None and views[owner.index].listeners < limit:
        return owner, False
    relays = [w for w in alive if w.index in views and views[w.index].relay
              and views[w.index].listeners < limit]
    if relays:
        return max(relays, key=lambda w: views[w.index].listeners), True
    fresh = [w for w in alive if w.index not in views]
    if fresh:
        return min(fresh, key=lambda w: w.participants()), True
    return None


class Front:
    def __init__(
        self,
        config: Config,
        workers: list[WorkerProcess],
        peers: Peers,
        participants: Callable[[], int],
        health: Callable[[], dict[str, Any]],
        placed: Callable[[], None],
    ) -> None:
        self._config = config
        self._workers = workers
        self._peers = peers
        self._participants = participants
        self._health = health
        self._placed = placed
        self.verifier = TokenVerifier.from_config(config)
        # What the commands the supervisor hands on said (authority.py): a worker
        # restarted since then learns it with its next join.
        self.book = AuthorityBook()
        self.draining = False
        self._http: aiohttp.ClientSession | None = None
        self._ws_http: aiohttp.ClientSession | None = None
        # Joins in the order the front took them (see ADMISSION_HEADER).
        self._admissions = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "the front's client sessions open with the app"
        return self._http

    def app(self) -> web.Application:
        app = web.Application(middlewares=[json_errors], client_max_size=MAX_SDP_BYTES)
        app.router.add_get("/health", self.health)
        app.router.add_post(SESSIONS_PATH, self.create_session)
        app.router.add_patch(SESSION_PATH, self.session_request)
        app.router.add_delete(SESSION_PATH, self.session_request)
        app.router.add_get(FEED_PATH, self.feed)
        app.cleanup_ctx.append(self._client)
        return app

    async def _client(self, app: web.Application) -> Any:
        # Answers wait for aiortc's ICE gathering: generous, but not unbounded.
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30), auto_decompress=False
        )
        # A proxied feed lasts as long as the Space: only connecting is bounded.
        self._ws_http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=10))
        yield
        await self._http.close()
        await self._ws_http.close()

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(self._health())

    # -- joins ---------------------------------------------------------------------------

    async def create_session(self, request: web.Request) -> web.StreamResponse:
        space_id = request.match_info["space_id"]
        authorization = request.headers.get("Authorization")
        claims = self.verifier.verify(authorization, space_id, any_node=True)
        if claims.node_id != self._config.node_id:
            return await self._to_node(request, claims.node_id, refusal=NodeError(
                403, "wrong_node", "the join token is for another media node"))
        claims = self.book.effective(claims)
        # Spent before the worker sees it (one use per node, whichever worker), and
        # given back if the session does not open, so that a refused request can retry.
        self.verifier.consume(claims)
        admitted = False
        try:
            placement = await self._place(claims, authorization or "")
            feed = placement.feed
            self._admissions += 1
            admission = self._admissions
            reservation = placement.worker.reserve(
                space_id,
                listener=not claims.may_publish,
                relay=feed is not None,
                origin=feed.origin if feed is not None else None,
                admission=admission,
            )
            headers = {"Authorization": authorization or "", ADMISSION_HEADER: str(admission)}
            known = self.book.known(space_id, claims.user_id)
            if known is not None:
                headers[AUTHORITY_HEADER] = json.dumps(known.as_list())
            if feed is not None:
                headers[FEED_HEADER] = feed.header()
            try:
                response = await self._to_worker(request, placement.worker, headers)
                admitted = response.status == 201
            finally:
                placement.worker.settle(reservation, admitted)
                self._placed()
            if admitted:
                self._replace_elsewhere(claims, placement.worker, admission)
            return response
        finally:
            if not admitted:
                self.verifier.release(claims)

    def _replace_elsewhere(
        self, claims: JoinClaims, placed_on: WorkerProcess, admission: int
    ) -> None:
        """A user who joins again (a reload, another device, a rejoin) replaces their
        earlier session of the Space. The worker that took the join does that itself;
        an earlier session may be on another worker (a relay's listener who now joins
        the owner, or the other way), so the other workers holding the Space are told
        too (a worker's view counts the joins placed there that its status has not yet
        shown). Those admitted after this join are kept: of two joins at once, the later
        one stays. Off the join's path: the answer does not wait for it."""

        async def tell(worker: WorkerProcess) -> None:
            url = worker.url + REPLACED_PATH.format(space_id=claims.space_id)
            body = {"user_id": claims.user_id, "admission": admission}
            try:
                async with self.http.post(url, json=body, headers=worker.headers) as response:
                    if response.status != 204:
                        log.warning("replacing elsewhere refused", extra={
                            "worker": worker.index, "status": response.status})
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("replacing elsewhere failed", extra={
                    "worker": worker.index, "why": repr(exc)})

        for worker in self._workers:
            if (
                worker.ready
                and worker is not placed_on
                and worker.view(claims.space_id) is not None
            ):
                task = asyncio.create_task(tell(worker))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _place(self, claims: JoinClaims, authorization: str) -> Placement:
        space_id = claims.space_id
        alive = [w for w in self._workers if w.ready]
        if not alive:
            raise NodeError(503, "unavailable", "the node's workers are restarting")
        holding = {w.index: view for w in alive if (view := w.view(space_id)) is not None}
        owner = next((w for w in alive if w.index in holding and not holding[w.index].relay), None)
        if claims.may_publish:
            if owner is not None:
                return Placement(owner, None)
            if claims.origin is not None:
                raise NodeError(403, "wrong_node", "speakers join the Space where it is mixed")
            return Placement(self._new_owner(alive, holding, space_id), None)
        if self._participants() >= self._config.capacity:
            raise NodeError(503, "full", "this node is at capacity")
        if owner is None and claims.origin is None:
            return Placement(self._new_owner(alive, holding, space_id), None)
        target = listener_target(space_id, alive, self._config.worker_listeners)
        if target is None:
            raise NodeError(503, "full", "this Space is at this node's limit")
        worker, relays = target
        if not relays:
            return Placement(worker, None)
        if owner is not None:
            feed = FeedSource(owner.url + FEED_PATH.format(space_id=space_id), owner.headers)
            return Placement(worker, feed)
        assert claims.origin is not None
        origin_url = await self._peers.private_url(claims.origin)
        if origin_url is None:
            raise NodeError(503, "relay_unavailable", "the Space's node is not reachable")
        # The origin accepts the subscription on the strength of this very token: the
        # control plane signed that this node is to relay the origin's Space.
        return Placement(worker, FeedSource(
            origin_url + FEED_PATH.format(space_id=space_id),
            {"Authorization": authorization}, origin=claims.origin))

    def _new_owner(
        self, alive: list[WorkerProcess], holding: dict[int, Any], space_id: str
    ) -> WorkerProcess:
        if self.draining:
            raise NodeError(503, "draining", "this node is draining and opens no new rooms")
        if self._participants() >= self._config.capacity:
            raise NodeError(503, "full", "this node is at capacity")
        free = [w for w in alive if w.index not in holding]
        if not free:
            raise NodeError(503, "full", "no worker is free to mix this Space")
        return min(free, key=lambda w: w.participants())

    # -- sessions ------------------------------------------------------------------------

    async def session_request(self, request: web.Request) -> web.StreamResponse:
        address = address_of(request.match_info["session_id"])
        unknown = NodeError(404, "unknown_session", "no such session on this node")
        if address is None:
            raise unknown
        if address.node_id != self._config.node_id:
            return await self._to_node(request, address.node_id, refusal=unknown)
        worker = next((w for w in self._workers if w.index == address.worker), None)
        if worker is None or not worker.ready:
            raise unknown
        return await self._to_worker(request, worker, {})

    # -- forwarding ----------------------------------------------------------------------

    async def _to_worker(
        self, request: web.Request, worker: WorkerProcess, headers: dict[str, str]
    ) -> web.Response:
        return await self._forward(request, worker.url, {**worker.headers, **headers})

    async def _to_node(
        self, request: web.Request, node_id: str, refusal: NodeError
    ) -> web.Response:
        """Forward to the node that holds the Space or session (ARCHITECTURE point 7:
        the load balancer spreads requests over nodes). Once only: a forwarded request
        that does not belong here either is refused."""
        if FORWARDED_HEADER in request.headers:
            raise refusal
        url = await self._peers.private_url(node_id)
        if url is None:
            raise refusal
        headers = {FORWARDED_HEADER: self._config.node_id}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        log.info("forwarded to another node", extra={"peer": node_id, "path": request.path})
        return await self._forward(request, url, headers)

    async def _forward(
        self, request: web.Request, base: str, headers: dict[str, str]
    ) -> web.Response:
        body = await request.read()
        if "Content-Type" in request.headers:
            headers = {**headers, "Content-Type": request.headers["Content-Type"]}
        try:
            async with self.http.request(
                request.method, base + request.rel_url.path, data=body or None, headers=headers
            ) as answer:
                content = await answer.read()
                kept = {k: answer.headers[k] for k in ANSWER_HEADERS if k in answer.headers}
                return web.Response(status=answer.status, body=content, headers=kept)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("forwarding failed", extra={"to": base, "why": repr(exc)})
            raise NodeError(503, "unavailable", "the media worker did not answer") from None

    # -- feeds for other nodes -----------------------------------------------------------

    async def feed(self, request: web.Request) -> web.StreamResponse:
        space_id = request.match_info["space_id"]
        self.verifier.verify_feed(request.headers.get("Authorization"), space_id)
        owner = next(
            (w for w in self._workers if w.ready and (v := w.view(space_id)) and not v.relay),
            None,
        )
        if owner is None:
            raise NodeError(404, "unknown_space", "this node does not mix this Space")
        assert self._ws_http is not None
        try:
            upstream = await self._ws_http.ws_connect(
                owner.url + request.rel_url.path, headers=owner.headers,
                heartbeat=WS_HEARTBEAT_SECONDS,
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise NodeError(exc.status, "unknown_space", "the Space's room is gone") from None
        downstream = web.WebSocketResponse(heartbeat=WS_HEARTBEAT_SECONDS)
        await downstream.prepare(request)
        log.info("feed relayed to another node", extra={"space_id": space_id})
        await asyncio.gather(_pump(upstream, downstream), _pump(downstream, upstream))
        return downstream


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    """One direction of the feed proxy; when either side ends, both close."""
    with contextlib.suppress(ConnectionError, RuntimeError):
        async for message in source:
            if message.type is aiohttp.WSMsgType.TEXT:
                await sink.send_str(message.data)
    with contextlib.suppress(ConnectionError, RuntimeError):
        await sink.close()
