"""The local authorization server: Cognito's hosted sign-in and OAuth endpoints, on this
machine, with the same shapes, so that the browser client signs in and refreshes
through one code path locally and in AWS.

- `GET  /local/oauth2/authorize`: the authorization code flow with PKCE (S256 only).
  There are no passwords locally: `login_hint` names the user (the client's demo
  buttons pass it); without one, a small form asks for a user id.
- `POST /local/oauth2/token`: `authorization_code` (the code once, with the verifier
  that hashes to its challenge and the same redirect URI) and `refresh_token`.
- `POST /local/oauth2/revoke`: revokes a refresh token (as Cognito's /oauth2/revoke).
- `GET  /local/logout`: back to `logout_uri`, as Cognito's /logout.

Access tokens live `PARLOR_TOKEN_SECONDS` (an hour by default, as Cognito's); refresh
tokens thirty days, kept in the state folder so that they outlive a restart of
`make up` as the signing key does. Errors are OAuth's: 400 with `error` (and
`error_description`, repeated as `message`, the API's word for it)."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from chalicelib.platform.validation import USER_ID
from local.issuer import LocalIssuer

CLIENT_ID = "parlor-local"
ACCESS_SECONDS = int(os.environ.get("PARLOR_TOKEN_SECONDS", "3600"))
REFRESH_SECONDS = 30 * 24 * 3600
CODE_SECONDS = 300
PREFIX = "/local"
# RFC 7636: 43 to 128 unreserved characters.
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status

    def response(self) -> web.Response:
        return web.json_response(
            {"error": self.error, "error_description": self.description,
             "message": self.description},
            status=self.status, headers={"Cache-Control": "no-store"})


@dataclass(frozen=True)
class Grant:
    user_id: str
    redirect_uri: str
    challenge: str
    expires_at: float


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class RefreshTokens:
    """Refresh tokens by their hash (the file never holds a usable token), persisted."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        try:
            self._tokens: dict[str, dict[str, Any]] = json.loads(path.read_text())
        except (OSError, ValueError):
            self._tokens = {}

    def _save(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._tokens))
        temporary.chmod(0o600)
        temporary.replace(self._path)

    def issue(self, user_id: str) -> str:
        token = secrets.token_urlsafe(48)
        now = time.time()
        with self._lock:
            self._tokens = {k: v for k, v in self._tokens.items() if v["expires_at"] > now}
            self._tokens[_hash(token)] = {"user_id": user_id,
                                          "expires_at": now + REFRESH_SECONDS}
            self._save()
        return token

    def user_of(self, token: str) -> str | None:
        with self._lock:
            entry = self._tokens.get(_hash(token))
        if entry is None or entry["expires_at"] <= time.time():
            return None
        return str(entry["user_id"])

    def revoke(self, token: str) -> None:
        with self._lock:
            if self._tokens.pop(_hash(token), None) is not None:
                self._save()


class LocalAuthorizationServer:
    def __init__(self, issuer: LocalIssuer, state: Path,
                 access_seconds: int = ACCESS_SECONDS) -> None:
        self.issuer = issuer
        self.access_seconds = access_seconds
        self.refresh_tokens = RefreshTokens(state / "refresh-tokens.json")
        self._codes: dict[str, Grant] = {}
        self._lock = threading.Lock()

    def provider(self, origin: str) -> dict[str, str]:
        """What the client's config.json says of this server (Cognito's `domain` and
        `client_id` in AWS)."""
        return {"domain": f"{origin}{PREFIX}", "client_id": CLIENT_ID}

    # -- the flows ----------------------------------------------------------------------

    def authorize(self, params: dict[str, str], origin: str) -> str:
        """The URL to send the browser to with its code, or OAuthError."""
        if params.get("client_id") != CLIENT_ID:
            raise OAuthError("invalid_client", "Unknown client_id")
        redirect_uri = params.get("redirect_uri", "")
        if _origin_of(redirect_uri) != origin:
            raise OAuthError("invalid_request", "redirect_uri must be on this origin")
        if params.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "Only response_type=code")
        if params.get("code_challenge_method") != "S256" or \
                not _CHALLENGE.fullmatch(params.get("code_challenge", "")):
            raise OAuthError("invalid_request", "PKCE with code_challenge_method=S256 is required")
        user_id = params.get("login_hint", "")
        if not USER_ID.fullmatch(user_id):
            raise OAuthError("invalid_request", "login_hint is 1 to 128 letters, digits or _.:@-")
        code = secrets.token_urlsafe(24)
        with self._lock:
            now = time.time()
            self._codes = {k: g for k, g in self._codes.items() if g.expires_at > now}
            self._codes[code] = Grant(user_id, redirect_uri, params["code_challenge"],
                                      now + CODE_SECONDS)
        answer = {"code": code}
        if "state" in params:
            answer["state"] = params["state"]
        return f"{redirect_uri}?{urlencode(answer)}"

    def token(self, form: dict[str, str]) -> dict[str, Any]:
        if form.get("client_id") != CLIENT_ID:
            raise OAuthError("invalid_client", "Unknown client_id", status=401)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return self._exchange_code(form)
        if grant_type == "refresh_token":
            user_id = self.refresh_tokens.user_of(form.get("refresh_token", ""))
            if user_id is None:
                raise OAuthError("invalid_grant", "The refresh token is not valid")
            # As Cognito without rotation: the same refresh token goes on.
            return self._tokens(user_id, refresh_token=None)
        raise OAuthError("unsupported_grant_type",
                         "grant_type is authorization_code or refresh_token")

    def _exchange_code(self, form: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)  # a code works once
        if grant is None or grant.expires_at <= time.time():
            raise OAuthError("invalid_grant", "The code is not valid (used, expired or unknown)")
        if form.get("redirect_uri") != grant.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization's")
        verifier = form.get("code_verifier", "")
        if not _VERIFIER.fullmatch(verifier) or \
                not secrets.compare_digest(_s256(verifier), grant.challenge):
            raise OAuthError("invalid_grant", "The code_verifier does not match the challenge")
        return self._tokens(grant.user_id, refresh_token=self.refresh_tokens.issue(grant.user_id))

    def _tokens(self, user_id: str, refresh_token: str | None) -> dict[str, Any]:
        ttl = self.access_seconds
        tokens: dict[str, Any] = {
            "access_token": self.issuer.mint(user_id, ttl_seconds=ttl, client_id=CLIENT_ID,
                                             scope="openid"),
            "id_token": self.issuer.mint(user_id, ttl_seconds=ttl, aud=CLIENT_ID,
                                         token_use="id"),  # noqa: S106 (a claim)
            "token_type": "Bearer",
            "expires_in": ttl,
        }
        if refresh_token is not None:
            tokens["refresh_token"] = refresh_token
        return tokens

    # -- HTTP ---------------------------------------------------------------------------

    def routes(self, app: web.Application, demo_users: list[dict[str, str]]) -> None:
        async def authorize(request: web.Request) -> web.StreamResponse:
            params = dict(request.query)
            origin = f"{request.scheme}://{request.host}"
            if "login_hint" not in params and params.get("client_id") == CLIENT_ID:
                return web.Response(text=_sign_in_page(params, demo_users),
                                    content_type="text/html")
            try:
                target = self.authorize(params, origin)
            except OAuthError as error:
                return error.response()
            raise web.HTTPFound(target)

        async def token(request: web.Request) -> web.Response:
            form = {k: str(v) for k, v in (await request.post()).items()}
            try:
                return web.json_response(self.token(form),
                                         headers={"Cache-Control": "no-store"})
            except OAuthError as error:
                return error.response()

        async def revoke(request: web.Request) -> web.Response:
            form = await request.post()
            if form.get("client_id") != CLIENT_ID:
                return OAuthError("invalid_client", "Unknown client_id", status=401).response()
            self.refresh_tokens.revoke(str(form.get("token", "")))
            return web.Response(status=200)

        async def logout(request: web.Request) -> web.StreamResponse:
            target = request.query.get("logout_uri", "/")
            origin = f"{request.scheme}://{request.host}"
            raise web.HTTPFound(target if _origin_of(target) == origin else "/")

        app.router.add_get(f"{PREFIX}/oauth2/authorize", authorize)
        app.router.add_post(f"{PREFIX}/oauth2/token", token)
        app.router.add_post(f"{PREFIX}/oauth2/revoke", revoke)
        app.router.add_get(f"{PREFIX}/logout", logout)


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _sign_in_page(params: dict[str, str], demo_users: list[dict[str, str]]) -> str:
    """Cognito's hosted page, locally: pick a user (no password on this machine)."""
    hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                     for k, v in params.items())
    options = "".join(f'<option value="{html.escape(u["user_id"])}">@{html.escape(u["handle"])}'
                      "</option>" for u in demo_users)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in to Parlor (local)</title></head>
<body><main><h1>Sign in to Parlor</h1>
<p>Running locally: there are no passwords. Type a user id.</p>
<form method="get" action="{PREFIX}/oauth2/authorize">{hidden}
<label for="login_hint">User id</label>
<input id="login_hint" name="login_hint" list="demo-users" required
 pattern="[A-Za-z0-9_.:@-]{{1,128}}"><datalist id="demo-users">{options}</datalist>
<button type="submit">Sign in</button></form></main></body></html>"""
