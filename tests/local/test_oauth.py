"""The local authorization server speaks Cognito's OAuth: the code flow with PKCE, the
refresh grant and revocation, over HTTP, and its access tokens pass the API's check."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
from aiohttp import web

from chalicelib.access.auth import verify_bearer
from local.oauth import CLIENT_ID, LocalAuthorizationServer
from local.web import WebServer
from tests.conftest import ISSUER
from tests.localrun import free_port


class Site:
    def __init__(self, base: str, server: LocalAuthorizationServer) -> None:
        self.base = base
        self.server = server
        self.redirect = f"{base}/"

    def authorize(self, verifier: str, **overrides: str) -> requests.Response:
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        params = {"response_type": "code", "client_id": CLIENT_ID,
                  "redirect_uri": self.redirect, "scope": "openid", "state": "st4te",
                  "code_challenge_method": "S256", "code_challenge": challenge,
                  "login_hint": "u-alice", **overrides}
        return requests.get(f"{self.base}/local/oauth2/authorize", params=params,
                            allow_redirects=False, timeout=5)

    def code(self, verifier: str) -> str:
        answer = self.authorize(verifier)
        assert answer.status_code == 302, answer.text
        location = urlsplit(answer.headers["Location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == self.redirect
        query = parse_qs(location.query)
        assert query["state"] == ["st4te"]
        return query["code"][0]

    def token(self, **form: str) -> requests.Response:
        return requests.post(f"{self.base}/local/oauth2/token",
                             data={"client_id": CLIENT_ID, **form}, timeout=5)

    def exchange(self, code: str, verifier: str) -> requests.Response:
        return self.token(grant_type="authorization_code", code=code,
                          redirect_uri=self.redirect, code_verifier=verifier)


def _serve(state: Path, access_seconds: int = 3600) -> tuple[WebServer, Site]:
    server = LocalAuthorizationServer(ISSUER, state, access_seconds=access_seconds)
    app = web.Application()
    server.routes(app, [{"user_id": "u-alice", "handle": "alice"}])
    port = free_port()
    return WebServer(app, "127.0.0.1", port).start(), Site(f"http://127.0.0.1:{port}", server)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    web_server, site = _serve(tmp_path, access_seconds=600)
    try:
        yield site
    finally:
        web_server.stop()


def _verifier() -> str:
    return secrets.token_urlsafe(48)


def test_the_code_flow_gives_tokens_the_api_accepts(site: Site) -> None:
    verifier = _verifier()
    answer = site.exchange(site.code(verifier), verifier)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    tokens = answer.json()
    assert set(tokens) == {"access_token", "id_token", "refresh_token", "token_type",
                           "expires_in"}
    assert (tokens["token_type"], tokens["expires_in"]) == ("Bearer", 600)
    assert verify_bearer(f"Bearer {tokens['access_token']}").user_id == "u-alice"
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 600
    assert (claims["token_use"], claims["client_id"]) == ("access", CLIENT_ID)


def test_a_code_needs_its_verifier_and_works_once(site: Site) -> None:
    verifier = _verifier()
    code = site.code(verifier)
    wrong = site.exchange(code, _verifier())
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    # The failed try spent the code: the right verifier is too late for it.
    assert site.exchange(code, verifier).json()["error"] == "invalid_grant"
    code = site.code(verifier)
    assert site.exchange(code, verifier).status_code == 200
    assert site.exchange(code, verifier).json()["error"] == "invalid_grant"
    other_redirect = site.token(grant_type="authorization_code", code=site.code(verifier),
                                redirect_uri=f"{site.base}/elsewhere", code_verifier=verifier)
    assert other_redirect.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(("override", "error"), [
    ({"redirect_uri": "https://evil.example/"}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge": "short"}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"client_id": "someone-else"}, "invalid_client"),
    ({"login_hint": "not a user id!"}, "invalid_request"),
])
def test_bad_authorizations_are_refused(site: Site, override: dict[str, str],
                                        error: str) -> None:
    answer = site.authorize(_verifier(), **override)
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"] == error
    assert body["error_description"] == body["message"]


def test_without_a_login_hint_the_sign_in_page_asks_for_a_user(site: Site) -> None:
    answer = site.authorize(_verifier(), login_hint="")
    assert answer.status_code == 400  # an empty hint is a bad one
    params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": site.redirect,
              "code_challenge_method": "S256", "code_challenge": "x" * 43}
    page = requests.get(f"{site.base}/local/oauth2/authorize", params=params, timeout=5)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert '<label for="login_hint">User id</label>' in page.text
    assert 'value="' + "x" * 43 + '"' in page.text


def test_refresh_renews_until_the_token_is_revoked(site: Site, tmp_path: Path) -> None:
    verifier = _verifier()
    refresh_token = site.exchange(site.code(verifier), verifier).json()["refresh_token"]
    renewed = site.token(grant_type="refresh_token", refresh_token=refresh_token)
    assert renewed.status_code == 200, renewed.text
    assert "refresh_token" not in renewed.json()  # as Cognito without rotation
    assert verify_bearer(f"Bearer {renewed.json()['access_token']}").user_id == "u-alice"
    # The store holds hashes only.
    assert refresh_token not in (tmp_path / "refresh-tokens.json").read_text()

    revoke = requests.post(f"{site.base}/local/oauth2/revoke",
                           data={"client_id": CLIENT_ID, "token": refresh_token}, timeout=5)
    assert revoke.status_code == 200
    refused = site.token(grant_type="refresh_token", refresh_token=refresh_token)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    assert site.token(grant_type="refresh_token", refresh_token="made-up").status_code == 400
    assert site.token(grant_type="password").json()["error"] == "unsupported_grant_type"
    foreign = requests.post(f"{site.base}/local/oauth2/token",
                            data={"client_id": "other", "grant_type": "refresh_token"},
                            timeout=5)
    assert (foreign.status_code, foreign.json()["error"]) == (401, "invalid_client")


def test_refresh_tokens_outlive_a_restart(tmp_path: Path) -> None:
    first, site = _serve(tmp_path)
    verifier = _verifier()
    refresh_token = site.exchange(site.code(verifier), verifier).json()["refresh_token"]
    first.stop()
    second, site = _serve(tmp_path)
    try:
        assert site.token(grant_type="refresh_token",
                          refresh_token=refresh_token).status_code == 200
    finally:
        second.stop()


def test_logout_returns_only_to_this_origin(site: Site) -> None:
    home = requests.get(f"{site.base}/local/logout", allow_redirects=False, timeout=5,
                        params={"client_id": CLIENT_ID, "logout_uri": site.redirect})
    assert (home.status_code, home.headers["Location"]) == (302, site.redirect)
    away = requests.get(f"{site.base}/local/logout", allow_redirects=False, timeout=5,
                        params={"client_id": CLIENT_ID, "logout_uri": "https://evil.example/"})
    assert away.headers["Location"] == "/"
