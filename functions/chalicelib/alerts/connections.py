"""Live updates of the Spaces bar over the WebSocket API.

A client connects with its bearer token in the query string (`?token=...`: browsers
cannot set headers on a WebSocket); the connection id is kept on the user's
AlertSettings, where the delivery finds it with the user's devices. A connection that
API Gateway reports gone is forgotten."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import boto3
from chalice.app import WebsocketDisconnectedError
from pynamodb.exceptions import DoesNotExist, UpdateError

from ..access.auth import verify_bearer
from ..platform.config import settings
from ..platform.models import AlertSettings, Connection

log = logging.getLogger(__name__)

# API Gateway closes a WebSocket after two hours; the record is kept a little longer.
CONNECTION_TTL_SECONDS = 3 * 3600


class WebsocketApi(Protocol):
    """The part of chalice's WebsocketAPI this module uses."""

    session: Any

    def configure_from_api_id(self, api_id: str, stage: str) -> None: ...

    def send(self, connection_id: str, message: str) -> None: ...


def connect(connection_id: str, query: dict[str, str] | None,
            close: Callable[[str], None] | None = None) -> str:
    """Admits the connection of a verified user; raises Unauthorized otherwise. A user
    has at most CONNECTIONS_PER_USER open: past that the oldest are closed (`close`
    asks API Gateway to close one), so one account cannot hold thousands open."""
    token = (query or {}).get("token")
    principal = verify_bearer(f"Bearer {token}" if token else None)
    now = time.time()
    Connection(connection_id, user_id=principal.user_id, connected_at=now,
               expires_at=int(now + CONNECTION_TTL_SECONDS)).save()
    current = AlertSettings(principal.user_id)
    current.update(actions=[AlertSettings.connections.add({connection_id})])
    held = set(current.connections or ())
    if len(held) > settings().connections_per_user:
        _evict_oldest(principal.user_id, held - {connection_id},
                      len(held) - settings().connections_per_user, close)
    return principal.user_id


def _evict_oldest(user_id: str, others: set[str], count: int,
                  close: Callable[[str], None] | None) -> None:
    known = {c.connection_id: c for c in Connection.batch_get(list(others))}
    # A connection whose record is gone sorts first: it is stale already.
    oldest = sorted(others, key=lambda cid: (
        cid in known, (known[cid].connected_at or 0) if cid in known else 0))
    for connection_id in oldest[:count]:
        log.info("user %s has too many connections: closing %s", user_id, connection_id)
        if close is not None:
            try:
                close(connection_id)
            except Exception:  # gone already, or the API refused: forgotten either way
                log.info("closing connection %s failed", connection_id, exc_info=True)
        forget(user_id, connection_id)


def disconnect(connection_id: str) -> None:
    try:
        connection = Connection.get(connection_id)
    except DoesNotExist:
        return
    forget(connection.user_id, connection_id)


def forget(user_id: str, connection_id: str) -> None:
    with contextlib.suppress(UpdateError):
        AlertSettings(user_id).update(
            actions=[AlertSettings.connections.delete({connection_id})],
            condition=AlertSettings.user_id.exists())
    Connection(connection_id).delete()


class Channel:
    """Posts to WebSocket connections through chalice's WebsocketAPI, which needs its
    API id and stage when the sender is not itself a WebSocket handler."""

    def __init__(self, api: WebsocketApi | None) -> None:
        self._api = api
        conf = settings()
        if api is not None and conf.websocket_api_id:
            if api.session is None:
                api.session = boto3.Session()
            api.configure_from_api_id(conf.websocket_api_id, conf.websocket_stage)
        else:
            self._api = None

    @property
    def enabled(self) -> bool:
        return self._api is not None

    def post(self, connection_id: str, payload: dict[str, Any]) -> bool:
        """False when the connection is gone."""
        assert self._api is not None
        try:
            self._api.send(connection_id, json.dumps(payload))
        except WebsocketDisconnectedError:
            return False
        return True
