"""TURN credentials minted per join (the TURN REST API scheme coturn checks): the join
answer's ice_servers gain the deployment's TURN server with a username and password of
this user's own that expire; no static TURN password exists anywhere. When the shared
secret cannot be read, joins go on without TURN."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator

import boto3
import pytest

from chalicelib.media import turn
from chalicelib.platform.config import ConfigError, settings
from tests.conftest import ICE_SERVERS
from tests.functional.conftest import World

URLS = ["turn:turn.example.org:3478?transport=udp", "turn:turn.example.org:3478?transport=tcp"]


@pytest.fixture
def turn_server(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    arn = boto3.client("secretsmanager").create_secret(
        Name="turn", SecretString="the-shared-secret")["ARN"]
    monkeypatch.setenv("TURN_URLS", json.dumps(URLS))
    monkeypatch.setenv("TURN_SECRET_ARN", arn)
    monkeypatch.setenv("TURN_CREDENTIAL_TTL_SECONDS", "600")
    settings.cache_clear()
    turn.forget()
    yield arn
    settings.cache_clear()
    turn.forget()


def _join(world: World) -> list[dict[str, object]]:
    world.node("node-a")
    space_id = world.live_space(world.host())
    reply = world.user("bob").post(f"/spaces/{space_id}/join")
    assert reply.status == 200, reply.json
    servers: list[dict[str, object]] = reply.json["media"]["ice_servers"]
    return servers


def test_a_join_brings_turn_credentials_of_its_own(world: World, turn_server: str) -> None:
    servers = _join(world)
    assert servers[:-1] == ICE_SERVERS
    relay = servers[-1]
    assert relay["urls"] == URLS
    username = str(relay["username"])
    expiry, _, user = username.partition(":")
    assert user == "u-bob"
    assert 595 <= int(expiry) - time.time() <= 601
    # What coturn computes from its static-auth-secret for that username.
    expected = base64.b64encode(hmac.new(b"the-shared-secret", username.encode(),
                                         hashlib.sha1).digest()).decode()
    assert relay["credential"] == expected


def test_the_credential_matches_the_turn_rest_api_scheme() -> None:
    # A fixed vector (coturn accepting such credentials is shown under make up,
    # tests/e2e/test_edge.py).
    username, credential = turn.credentials("north", "u-x", 3600, now=1_700_000_000)
    assert (username, credential) == ("1700003600:u-x", "QMY94tSLPsrszX9LZvugoZ3dE3w=")


def test_an_unreadable_secret_leaves_turn_out_and_the_join_works(
    world: World, turn_server: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    boto3.client("secretsmanager").delete_secret(SecretId=turn_server,
                                                 ForceDeleteWithoutRecovery=True)
    assert _join(world) == ICE_SERVERS


def test_without_turn_urls_nothing_is_added(world: World) -> None:
    assert _join(world) == ICE_SERVERS


def test_turn_urls_must_be_turn_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    for raw in ("turn:x", '["stun:stun.example.org"]', '{"urls": []}'):
        monkeypatch.setenv("TURN_URLS", raw)
        settings.cache_clear()
        with pytest.raises(ConfigError, match="TURN_URLS"):
            settings()
    settings.cache_clear()
