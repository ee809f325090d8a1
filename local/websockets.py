"""The WebSocket API on this machine, as API Gateway runs it in AWS: clients connect to
/ws; each connect and disconnect invokes the app's WebSocket handlers with API
Gateway's event shape; and the API Gateway Management API (`POST
/ws-api/@connections/{id}` to post, DELETE to close, 410 GoneException for a closed
connection) lets the app's own code reach clients through boto3, unchanged."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from chalice.local import LambdaContext

Handler = Callable[[dict[str, Any], Any], Any]
MANAGEMENT_PATH = "/ws-api"
STAGE = "api"


def _event(route: str, connection_id: str, request: web.Request) -> dict[str, Any]:
    kind = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}[route]
    return {
        "requestContext": {
            "routeKey": route, "eventType": kind, "connectionId": connection_id,
            "apiId": "local", "stage": STAGE, "domainName": request.host,
            "requestId": uuid.uuid4().hex, "connectedAt": int(time.time() * 1000),
        },
        "queryStringParameters": dict(request.query) or None,
        "headers": dict(request.headers.items()),
        "isBase64Encoded": False,
    }


class LocalWebsockets:
    def __init__(self, on_connect: Handler, on_disconnect: Handler) -> None:
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._open: dict[str, web.WebSocketResponse] = {}

    async def _invoke(self, handler: Handler, event: dict[str, Any]) -> Any:
        context = LambdaContext("websocket", memory_size=256, max_runtime_ms=30_000)
        # The handlers do blocking AWS calls: off the event loop, as Lambda runs them.
        return await asyncio.get_running_loop().run_in_executor(None, handler, event, context)

    async def connect(self, request: web.Request) -> web.StreamResponse:
        connection_id = uuid.uuid4().hex[:16] + "="
        answer = await self._invoke(self._on_connect, _event("$connect", connection_id, request))
        status = int((answer or {}).get("statusCode", 200))
        if status != 200:
            # API Gateway refuses the upgrade with the handler's status.
            return web.Response(status=status, body=(answer or {}).get("body"),
                                content_type="application/json")
        socket = web.WebSocketResponse(heartbeat=30)
        await socket.prepare(request)
        self._open[connection_id] = socket
        try:
            async for message in socket:
                if message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self._open.pop(connection_id, None)
            await self._invoke(self._on_disconnect,
                               _event("$disconnect", connection_id, request))
        return socket

    async def post_to_connection(self, request: web.Request) -> web.Response:
        socket = self._open.get(request.match_info["connection_id"])
        if socket is None or socket.closed:
            return web.json_response({"message": "Gone"}, status=410,
                                     headers={"x-amzn-ErrorType": "GoneException"})
        await socket.send_str((await request.read()).decode())
        return web.Response(status=200)

    async def delete_connection(self, request: web.Request) -> web.Response:
        socket = self._open.get(request.match_info["connection_id"])
        if socket is None or socket.closed:
            return web.json_response({"message": "Gone"}, status=410,
                                     headers={"x-amzn-ErrorType": "GoneException"})
        await socket.close(code=WSCloseCode.POLICY_VIOLATION, message=b"closed by the API")
        return web.Response(status=204)

    @staticmethod
    def management_endpoint(base_url: str) -> str:
        """Where the app's WebsocketAPI posts to connections (its endpoint in AWS is
        https://<api id>.execute-api.<region>.amazonaws.com/<stage>)."""
        return f"{base_url}{MANAGEMENT_PATH}/{STAGE}"

    async def close_all(self, _: web.Application) -> None:
        """On shutdown: every client is told the server is going away (1001), as API
        Gateway does, instead of the server waiting for them to leave."""
        for socket in list(self._open.values()):
            await socket.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping")

    def routes(self, app: web.Application) -> None:
        app.on_shutdown.append(self.close_all)
        app.router.add_get("/ws", self.connect)
        app.router.add_post(f"{MANAGEMENT_PATH}/{STAGE}/@connections/{{connection_id}}",
                            self.post_to_connection)
        app.router.add_delete(f"{MANAGEMENT_PATH}/{STAGE}/@connections/{{connection_id}}",
                              self.delete_connection)
