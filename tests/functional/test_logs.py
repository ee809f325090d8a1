"""What the Lambda functions log: one JSON object a line (Powertools' Logger), with the
invocation's request id and function name, from the app and from the domain modules."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.platform import logs
from chalicelib.platform.config import settings
from tests.events import sqs_event
from tests.functional.conftest import World


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    """What the functions print (to stdout in Lambda, which CloudWatch Logs keeps)."""
    handler = logs.logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    captured = io.StringIO()
    previous = handler.setStream(captured)
    yield captured
    handler.setStream(previous)


def _lines(captured: str) -> list[dict[str, Any]]:
    found = []
    for line in captured.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            found.append(entry)
    return found


def test_an_event_handlers_domain_logs_carry_the_invocation(
    world: World, output: io.StringIO,
) -> None:
    draining = json.dumps({"v": 1, "type": "node_draining", "node_id": "node-logs",
                           "at": time.time()})
    world.client.lambda_.invoke("handle_media_events", sqs_event(draining))
    (entry,) = [e for e in _lines(output.getvalue())
                if e.get("message") == "node node-logs is draining"]
    assert entry["level"] == "INFO"
    assert entry["service"] == "parlor"
    assert entry["function_name"] == "handle_media_events"
    assert entry["function_request_id"]
    assert entry["location"].startswith("apply:")
    assert "cold_start" in entry


def test_a_routes_failure_is_logged_as_json_with_the_request(
    world: World, output: io.StringIO, monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice = world.user("alice")
    monkeypatch.setenv("JOIN_TOKEN_TTL_SECONDS", "soon")
    settings.cache_clear()
    try:
        # Straight to the client: a 500 is no documented answer of the route.
        reply = world.client.http.get("/spaces/live",
                                      headers={"Authorization": f"Bearer {alice.token}"})
    finally:
        settings.cache_clear()
    assert (reply.status_code, json.loads(reply.body)["error"]) == (500, "misconfigured")
    (entry,) = [e for e in _lines(output.getvalue())
                if e.get("message") == "configuration error"]
    assert entry["level"] == "ERROR"
    assert "JOIN_TOKEN_TTL_SECONDS" in entry["exception"]
    assert entry["function_request_id"]
