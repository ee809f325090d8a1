"""What a bearer token must be beyond a valid signature: an access token (never a Cognito
ID token), for this app client when one is configured; and what happens when the
issuer's published key set is fetched over HTTP: unknown key ids do not make every
request fetch it again, and an unreachable key set is the service's fault (503)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from chalicelib.access import auth
from chalicelib.platform.config import settings
from chalicelib.platform.errors import Unauthorized, Unavailable
from local.issuer import LocalIssuer
from tests.conftest import ISSUER
from tests.functional.conftest import World


@pytest.fixture
def audience(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AUTH_AUDIENCE", "web-client")
    settings.cache_clear()
    yield "web-client"
    monkeypatch.delenv("AUTH_AUDIENCE")
    settings.cache_clear()


def test_an_id_token_is_refused(world: World) -> None:
    id_token = ISSUER.mint("u-alice", token_use="id", aud="web-client")
    reply = world.caller(None, token=id_token).get("/spaces/live")
    assert (reply.status, reply.json["error"]) == (401, "invalid_token")
    assert "access token" in reply.json["message"]


def test_a_token_without_token_use_is_refused(world: World) -> None:
    token = ISSUER.mint("u-alice", token_use=None)
    reply = world.caller(None, token=token).get("/spaces/live")
    assert (reply.status, reply.json["error"]) == (401, "invalid_token")


def test_the_audience_is_the_access_tokens_client_id(world: World, audience: str) -> None:
    ours = ISSUER.mint("u-alice", client_id=audience)
    assert world.caller(None, token=ours).get("/spaces/live").status == 200
    theirs = ISSUER.mint("u-alice", client_id="another-client")
    reply = world.caller(None, token=theirs).get("/spaces/live")
    assert (reply.status, reply.json["error"]) == (401, "invalid_token")
    # An `aud` naming our client does not stand in for the access token's client_id.
    by_aud = ISSUER.mint("u-alice", aud=audience)
    assert world.caller(None, token=by_aud).get("/spaces/live").status == 401


class _Jwks(BaseHTTPRequestHandler):
    served: dict[str, Any] = {}
    requests = 0

    def do_GET(self) -> None:
        type(self).requests += 1
        body = json.dumps(self.served).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, type[_Jwks]]]:
    handler = type("Jwks", (_Jwks,), {"served": ISSUER.jwks(), "requests": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", handler
    finally:
        server.shutdown()
        server.server_close()


def _remote(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.delenv("AUTH_JWKS")
    monkeypatch.setenv("AUTH_JWKS_URL", url)
    settings.cache_clear()
    auth.remote_key_set.cache_clear()


@pytest.fixture
def restore_settings() -> Iterator[None]:
    yield
    settings.cache_clear()
    auth.remote_key_set.cache_clear()


def test_random_key_ids_do_not_fetch_the_key_set_each_time(
    monkeypatch: pytest.MonkeyPatch, restore_settings: None,
    jwks_server: tuple[str, type[_Jwks]],
) -> None:
    url, served = jwks_server
    _remote(monkeypatch, url)
    assert auth.verify_bearer(f"Bearer {ISSUER.mint('u-alice')}").user_id == "u-alice"
    assert served.requests == 1
    forger = LocalIssuer.generate()
    for _ in range(50):
        token = _with_kid(forger, uuid.uuid4().hex)
        with pytest.raises(Unauthorized):
            auth.verify_bearer(f"Bearer {token}")
    # One fetch at start, at most one more for all fifty made-up ids.
    assert served.requests <= 2
    # The known key still verifies without a fetch.
    before = served.requests
    assert auth.verify_bearer(f"Bearer {ISSUER.mint('u-bob')}").user_id == "u-bob"
    assert served.requests == before


def test_a_key_published_later_is_found_after_the_refresh_interval(
    monkeypatch: pytest.MonkeyPatch, restore_settings: None,
    jwks_server: tuple[str, type[_Jwks]],
) -> None:
    url, served = jwks_server
    _remote(monkeypatch, url)
    monkeypatch.setattr(auth, "MIN_REFRESH_SECONDS", 0.0)
    monkeypatch.setattr(auth, "UNKNOWN_KID_SECONDS", 0.3)
    newcomer = LocalIssuer.generate()
    token = _with_kid(newcomer, "rotated-in")
    # Unknown at first; remembered as unknown, so asking again fetches nothing.
    with pytest.raises(Unauthorized):
        auth.verify_bearer(f"Bearer {token}")
    fetched = served.requests
    with pytest.raises(Unauthorized):
        auth.verify_bearer(f"Bearer {token}")
    assert served.requests == fetched
    # The issuer publishes it; once the remembered answer expires, it verifies.
    published = newcomer.jwks()["keys"][0] | {"kid": "rotated-in"}
    served.served = {"keys": [*ISSUER.jwks()["keys"], published]}
    time.sleep(0.4)
    assert auth.verify_bearer(f"Bearer {token}").user_id == "u-alice"


def test_an_unreachable_key_set_is_503_not_401(
    monkeypatch: pytest.MonkeyPatch, restore_settings: None, world: World,
) -> None:
    # A port nothing listens on: the issuer's keys cannot be read.
    _remote(monkeypatch, "http://127.0.0.1:9/jwks.json")
    with pytest.raises(Unavailable):
        auth.verify_bearer(f"Bearer {ISSUER.mint('u-alice')}")
    reply = world.caller("u-alice").get("/spaces/live")
    assert (reply.status, reply.json["error"]) == (503, "identity_unavailable")


def _with_kid(issuer: LocalIssuer, kid: str) -> str:
    import jwt

    token = issuer.mint("u-alice")
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode(claims, issuer._key, algorithm="RS256", headers={"kid": kid})
