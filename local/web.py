"""The browser client's origin on this machine, shaped like CloudFront in AWS: the
static client at /, hls.js at /vendor/ (from node_modules, as cdk/web.py publishes it),
the API under /api/*, media-node signaling under /media/*, each Space's HLS under
/hls/* (from the embedded S3, with the headers CloudFront passes on). One origin means
no CORS, locally as in the cloud.

It also serves what only local mode has: /config.json for the client, and under /local/
the local authorization server (local/oauth.py), which stands in for Cognito's hosted
sign-in and token endpoints."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import aiohttp
import boto3
import yarl
from aiohttp import web
from botocore.exceptions import BotoCoreError, ClientError

from local import settings
from local.oauth import LocalAuthorizationServer
from local.websockets import LocalWebsockets

WEB_ROOT = settings.ROOT / "web"
# What `npm ci` installed (make up depends on it), at the path the deployed site uses.
HLS_JS = settings.ROOT / "node_modules" / "hls.js" / "dist" / "hls.min.mjs"
APP_PATHS = ("/spaces/{space_id}", "/@{handle}", "/settings")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host",
               "content-length", "content-encoding"}


def _proxy(upstream: str, strip: str,
           signature: tuple[str, str] | None = None) -> Callable[[web.Request], Any]:
    """Forwards to `upstream`; `signature`: the (header, secret) that CloudFront adds to
    what it sends its origin, put in place of any value the client sent."""
    async def forward(request: web.Request) -> web.StreamResponse:
        # As sent, still percent-encoded: a decoded `%23` would end the path at a `#`.
        path = request.rel_url.raw_path[len(strip):] or "/"
        query = request.rel_url.raw_query_string
        url = yarl.URL(upstream + path + (f"?{query}" if query else ""), encoded=True)
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


# What of an object's metadata a browser gets, as CloudFront passes it on.
_OBJECT_HEADERS = {"ContentType": "Content-Type", "CacheControl": "Cache-Control",
                   "ETag": "ETag", "ContentLength": "Content-Length"}


def _objects(bucket: str, prefix: str) -> Callable[[web.Request], Any]:
    """`prefix`* of a bucket of the embedded S3, as a CloudFront behavior serves it: the
    object as stored, with its own Content-Type and Cache-Control (an HLS playlist a
    second, a segment immutable); 404 for what is not there (yet). Read with a signed
    GetObject: the embedded S3 cannot tell an unsigned request for S3 from one for
    another service."""
    s3 = boto3.client("s3")

    async def serve(request: web.Request) -> web.StreamResponse:
        key = prefix + request.match_info["tail"]

        def read() -> tuple[dict[str, Any], bytes]:
            answer = s3.get_object(Bucket=bucket, Key=key)
            return answer, answer["Body"].read()

        try:
            answer, body = await asyncio.get_running_loop().run_in_executor(None, read)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return web.Response(status=404, text="Not Found")
            return web.Response(status=502, text="Bad Gateway")
        except BotoCoreError:
            return web.Response(status=502, text="Bad Gateway")
        headers = {header: str(answer[field]) for field, header in _OBJECT_HEADERS.items()
                   if field in answer}
        headers.setdefault("Cache-Control", "no-cache")
        headers["X-Content-Type-Options"] = "nosniff"
        return web.Response(status=200, body=body if request.method != "HEAD" else None,
                            headers=headers)

    return serve


def application(oauth: LocalAuthorizationServer, api_url: str, media_urls: list[str],
                demo_users: list[dict[str, str]],
                websockets: LocalWebsockets | None = None,
                api_signature: tuple[str, str] | None = None,
                avatars_bucket: str | None = None,
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
            "auth": {"mode": "local",
                     "oauth": oauth.provider(f"{request.scheme}://{request.host}")},
            "api_url": "/api",
            "websocket_url": f"ws://{request.host}/ws" if websockets else None,
            "demo_users": demo_users,
        })

    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB_ROOT / "index.html")

    async def hls_js(_: web.Request) -> web.StreamResponse:
        if not HLS_JS.exists():
            return web.Response(status=404, text="hls.js is not installed: run make up")
        # A module script must be served as JavaScript, whatever this machine's MIME
        # table says of `.mjs`.
        return web.FileResponse(HLS_JS, headers={
            "Content-Type": "text/javascript; charset=utf-8"})

    if websockets is not None:
        websockets.routes(app)
    app.router.add_get("/config.json", config)
    oauth.routes(app, demo_users)
    app.router.add_route("*", "/api/{tail:.*}", _proxy(api_url, "/api", api_signature))
    app.router.add_route("*", "/media/{tail:.*}", _spread(media_urls))
    if avatars_bucket is not None:
        app.router.add_get("/avatars/{tail:.+}", _objects(avatars_bucket, "avatars/"))
    if hls_bucket is not None:
        app.router.add_get("/hls/{tail:.+}", _objects(hls_bucket, "hls/"))
    app.router.add_get(f"/vendor/{HLS_JS.name}", hls_js)
    app.router.add_get("/", index)
    # The client's own paths, which CloudFront's viewer-request function (cdk/browser.py)
    # also answers with index.html.
    for path in APP_PATHS:
        app.router.add_get(path, index)
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
