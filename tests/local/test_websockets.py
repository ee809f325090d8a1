"""The local WebSocket API: API Gateway's connect and disconnect events reach the
handlers, and the app's boto3 posts reach the client, with GoneException once closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import boto3
import pytest
from aiohttp import web

from local.web import WebServer
from local.websockets import LocalWebsockets
from tests.localrun import free_port


class Handlers:
    """Stand-ins for the app's WebSocket handlers: record events, refuse bad tokens."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def connect(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        if (event.get("queryStringParameters") or {}).get("token") != "good":
            return {"statusCode": 401, "body": '{"error": "missing_token"}'}
        return {"statusCode": 200}

    def disconnect(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        return {"statusCode": 200}


@pytest.fixture
def gateway() -> Iterator[tuple[str, Handlers]]:
    handlers = Handlers()
    sockets = LocalWebsockets(handlers.connect, handlers.disconnect)
    app = web.Application()
    sockets.routes(app)
    port = free_port()
    server = WebServer(app, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", handlers
    finally:
        server.stop()


def test_connect_post_and_gone(gateway: tuple[str, Handlers]) -> None:
    base, handlers = gateway
    management = boto3.client("apigatewaymanagementapi",
                              endpoint_url=LocalWebsockets.management_endpoint(base))

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(f"{base}/ws?token=bad")
            assert refused.value.status == 401
            async with session.ws_connect(f"{base}/ws?token=good") as socket:
                connect = handlers.events[-1]
                connection_id = connect["requestContext"]["connectionId"]
                assert connect["requestContext"]["routeKey"] == "$connect"
                await asyncio.to_thread(management.post_to_connection,
                                        ConnectionId=connection_id, Data=b'{"hello": 1}')
                message = await socket.receive(timeout=5)
                assert message.data == '{"hello": 1}'
            for _ in range(50):
                if handlers.events[-1]["requestContext"]["routeKey"] == "$disconnect":
                    break
                await asyncio.sleep(0.05)
            assert handlers.events[-1]["requestContext"]["connectionId"] == connection_id
            with pytest.raises(management.exceptions.GoneException):
                await asyncio.to_thread(management.post_to_connection,
                                        ConnectionId=connection_id, Data=b"late")

    asyncio.run(scenario())


def test_stopping_closes_open_connections_at_once() -> None:
    handlers = Handlers()
    sockets = LocalWebsockets(handlers.connect, handlers.disconnect)
    app = web.Application()
    sockets.routes(app)
    port = free_port()
    server = WebServer(app, "127.0.0.1", port).start()

    async def connected_client() -> tuple[int | None, float]:
        async with aiohttp.ClientSession() as session, \
                session.ws_connect(f"http://127.0.0.1:{port}/ws?token=good") as socket:
            stopping = asyncio.get_running_loop().run_in_executor(None, server.stop)
            started = time.monotonic()
            await socket.receive(timeout=10)
            await stopping
            return socket.close_code, time.monotonic() - started

    close_code, seconds = asyncio.run(connected_client())
    assert close_code == 1001
    assert seconds < 5
    assert handlers.events[-1]["requestContext"]["routeKey"] == "$disconnect"
