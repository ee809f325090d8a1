"""The browser client's origin on this machine, shaped like CloudFront in AWS: the
static client at /, the API under /api/*, media-node signaling under /media/*, each
Space's HLS under /hls/* (from the embedded S3, with the headers CloudFront passes on).
One origin means no CORS, locally as in the cloud.

It also serves what only local mode has: /config.json for the client, and /local/token,
the local issuer's sign-in (any user id gets a token; there is no password locally)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import boto3
from aiohttp import web
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.validation import USER_ID
from local import settings
from local.issuer import LocalIssuer
from local.websockets import LocalWebsockets

WEB_ROOT = settings.ROOT / "web"
TOKEN_HOURS = 12
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host",
               "content-length", "content-encoding"}


def _proxy(upstream: str, strip: str,
           signature: tuple[str, str] | None = None) -> Callable[[web.Request], Any]:
    """Forwards to `upstream`; `signature`: the (header, secret) that CloudFront adds to
    what it sends its origin, put in place of any value the client sent."""
    async def forward(request: web.Request) -> web.StreamResponse:
        path = request.rel_url.path[len(strip):] or "/"
        url = upstream + path + (f"?{request.rel_url.query_string}"
                                 if request.rel_url.query_string else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP
                   and (signature is None or k.lower() != signature[0].lower())}
        if signature is not None:
            headers[signature[0]] = signature[1]
        session: aiohttp.ClientSession = request.app["client"]
        # No body means no data: aiohttp would otherwise label an empty body
        # application/octet-stream, which the API refuses.
        body = await request.read()
        async with session.request(request.method, url, headers=headers,
                                   data=body or None) as answer:
            out = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
            return web.Response(status=answer.status, body=await answer.read(), headers=out)

    return forward


def _spread(upstreams: list[str]) -> Callable[[web.Request], Any]:
    """/media/* to the media nodes, as the load balancer in AWS does: to the next node
    in turn, and past one that does not answer (a node that died) to another. Each
    node's front forwards what belongs to another node itself."""
    forwards = [_proxy(upstream, "") for upstream in upstreams]
    turn = 0

    async def forward(request: web.Request) -> web.StreamResponse:
        nonlocal turn
        start, turn = turn, (turn + 1) % len(forwards)
        for offset in range(len(forwards)):
            try:
                return await forwards[(start + offset) % len(forwards)](request)
            except aiohttp.ClientConnectorError:
                continue
        return web.json_response({"error": "unavailable",
                                  "message": "no media node answers"}, status=503)

    return forward


# What of an HLS object's metadata a player gets, as CloudFront passes it on.
_HLS_HEADERS = {"ContentType": "Content-Type", "CacheControl": "Cache-Control",
                "ETag": "ETag", "ContentLength": "Content-Length"}


def _hls(bucket: str) -> Callable[[web.Request], Any]:
    """/hls/* from the bucket the media nodes write to, as CloudFront's /hls/* behavior
    serves it: the object as stored, with its own Content-Type and Cache-Control (a
    playlist a second, a segment immutable); 404 for what is not there (yet)."""
    s3 = boto3.client("s3")

    async def serve(request: web.Request) -> web.StreamResponse:
        key = "hls/" + request.match_info["tail"]
        loop = asyncio.get_running_loop()

        def read() -> tuple[dict[str, Any], bytes]:
            answer = s3.get_object(Bucket=bucket, Key=key)
            return answer, answer["Body"].read()

        try:
            answer, body = await loop.run_in_executor(None, read)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return web.Response(status=404, text="Not Found")
            return web.Response(status=502, text="Bad Gateway")
        except BotoCoreError:
            return web.Response(status=502, text="Bad Gateway")
        headers = {header: str(answer[field]) for field, header in _HLS_HEADERS.items()
                   if field in answer}
        return web.Response(status=200, body=body if request.method != "HEAD" else None,
                            headers=headers)

    return serve


def application(issuer: LocalIssuer, api_url: str, media_urls: list[str],
                demo_users: list[dict[str, str]],
                websockets: LocalWebsockets | None = None,
                api_signature: tuple[str, str] | None = None,
                hls_bucket: str | None = None) -> web.Application:
    """`api_signature`: the origin header and secret added to what /api/* forwards (the
    API refuses requests without it, as it does in AWS those that skip CloudFront).
    /media/* goes unsigned: in AWS the load balancer checks CloudFront's header before
    a node sees a request, and nodes also take each other's forwarded requests."""
    app = web.Application()

    async def client_session(app: web.Application) -> Any:
        app["client"] = aiohttp.ClientSession(auto_decompress=False)
        yield
        await app["client"].close()

    app.cleanup_ctx.append(client_session)

    async def config(request: web.Request) -> web.Response:
        return web.json_response({
            "auth": {"mode": "local"},
            "api_url": "/api",
            "websocket_url": f"ws://{request.host}/ws" if websockets else None,
            "demo_users": demo_users,
        })

    async def token(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        user_id = body.get("user_id") if isinstance(body, dict) else None
        if not isinstance(user_id, str) or not USER_ID.fullmatch(user_id):
            return web.json_response({"error": "invalid_field", "field": "user_id",
                                      "message": "'user_id' is 1 to 128 letters, digits or _.:@-"},
                                     status=400)
        ttl = TOKEN_HOURS * 3600
        return web.json_response({"token": issuer.mint(user_id, ttl_seconds=ttl),
                                  "user_id": user_id, "expires_at": int(time.time()) + ttl})

    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB_ROOT / "index.html")

    if websockets is not None:
        websockets.routes(app)
    app.router.add_get("/config.json", config)
    app.router.add_post("/local/token", token)
    app.router.add_route("*", "/api/{tail:.*}", _proxy(api_url, "/api", api_signature))
    app.router.add_route("*", "/media/{tail:.*}", _spread(media_urls))
    if hls_bucket is not None:
        app.router.add_get("/hls/{tail:.+}", _hls(hls_bucket))
    app.router.add_get("/", index)
    app.router.add_static("/", WEB_ROOT)
    return app


class WebServer:
    """The aiohttp app on its own thread and event loop, beside the other services."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._app, self._host, self._port = app, host, port
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, access_log=None)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="web", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self._host, self._port)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> WebServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the web server did not start")
        return self

    def stop(self) -> None:
        future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        future.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
