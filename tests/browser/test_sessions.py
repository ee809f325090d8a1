"""Sessions survive the hour: the client renews its access token with the refresh token
before it expires (and on a 401), reconnects the bar's socket with the new token, and
signs out cleanly when a refresh is refused. The local sign-in speaks Cognito's OAuth
(local/oauth.py); here its access tokens live 15 seconds instead of an hour."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Request, WebSocket, expect

from local.issuer import LocalIssuer
from tests.browser.conftest import Person
from tests.localrun import LocalRun

pytestmark = pytest.mark.slow
LIFETIME = 15


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    run = LocalRun.prepare(tmp_path_factory.mktemp("sessions-state"))
    run.env["PARLOR_TOKEN_SECONDS"] = str(LIFETIME)
    run.start()
    try:
        yield run
    finally:
        run.kill()


class Watch:
    """What a page asks of the token endpoint and which sockets it opens."""

    def __init__(self, person: Person) -> None:
        self.refreshes: list[float] = []
        self.sockets: list[WebSocket] = []
        self.api_calls: list[float] = []
        person.page.on("request", self._request)
        person.page.on("websocket", self._socket)

    def _socket(self, socket: WebSocket) -> None:
        self.sockets.append(socket)

    def _request(self, request: Request) -> None:
        if request.url.endswith("/oauth2/token") and \
                "grant_type=refresh_token" in (request.post_data or ""):
            self.refreshes.append(time.time())
        if "/api/" in request.url:
            self.api_calls.append(time.time())


def _session(person: Person) -> dict[str, Any]:
    stored = person.page.evaluate("localStorage.getItem('parlor.session')")
    return json.loads(stored) if stored else {}


def test_a_token_near_expiry_is_renewed_without_the_user_noticing(
    people: dict[str, Person], local: LocalRun
) -> None:
    bob = people["u-bob"]
    watch = Watch(bob)
    bob.sign_in("bob")
    first = _session(bob)
    assert first["expiresAt"] - first["issuedAt"] == LIFETIME
    assert first["refreshToken"]
    expect(bob.page.get_by_text("You cannot host yet")).to_be_visible()

    # Renewed ahead of expiry (a fifth of the lifetime before), with no sign of it.
    deadline = time.time() + LIFETIME + 5
    while _session(bob).get("accessToken") == first["accessToken"]:
        assert time.time() < deadline, "the access token was never renewed"
        time.sleep(0.2)
    renewed_at = time.time()
    assert renewed_at < first["expiresAt"]
    assert len(watch.refreshes) == 1
    assert _session(bob)["refreshToken"] == first["refreshToken"]
    expect(bob.page.get_by_role("alert")).to_be_hidden()
    expect(bob.page.get_by_text("@bob", exact=True)).to_be_visible()

    # The bar's socket was opened again with the new token, and live updates arrive on it.
    deadline = time.time() + 5
    while not (len(watch.sockets) >= 2 and bob.page.evaluate("window.parlorBar.live")):
        assert time.time() < deadline, [s.url for s in watch.sockets]
        time.sleep(0.2)
    latest = urllib.parse.parse_qs(urllib.parse.urlsplit(watch.sockets[-1].url).query)
    assert latest["token"] == [_session(bob)["accessToken"]]
    assert watch.sockets[0].is_closed()

    # Past the first token's expiry, everything still works: a Space alice starts
    # reaches bob's bar over the new socket, and its page loads.
    time.sleep(max(0.0, first["expiresAt"] + 1 - time.time()))
    status, space = local.call("POST", "/spaces", "u-alice", {"title": "Past the hour"})
    assert status == 201, space
    try:
        in_bar = bob.page.locator("#bar-list a", has_text="Past the hour")
        expect(in_bar).to_be_visible(timeout=20_000)
        in_bar.click()
        expect(bob.page.get_by_role("heading", name="Past the hour")).to_be_visible()
        expect(bob.page.get_by_role("alert")).to_be_hidden()
    finally:
        local.call("POST", f"/spaces/{space['space_id']}/end", "u-alice")


def test_a_401_renews_the_token_and_the_call_is_made_again(
    people: dict[str, Person], local: LocalRun
) -> None:
    dave = people["u-dave"]
    watch = Watch(dave)
    dave.sign_in("dave")
    expect(dave.page.get_by_text("You cannot host yet")).to_be_visible()
    # A token the client thinks good for an hour, that the API refuses (another key).
    stranger = LocalIssuer.generate().mint("u-dave", ttl_seconds=3600)
    dave.page.evaluate(
        """(token) => {
          const now = Math.floor(Date.now() / 1000);
          window.parlorAuth.session = { ...window.parlorAuth.session, accessToken: token,
            issuedAt: now, expiresAt: now + 3600 };
        }""", stranger)
    before = len(watch.refreshes)
    dave.page.get_by_role("link", name="Settings").click()  # a page of API calls
    # Its lists arrive: the calls answered 401 were made again with a renewed token.
    expect(dave.page.get_by_text("You blocked nobody.")).to_be_visible(timeout=10_000)
    expect(dave.page.get_by_role("alert")).to_be_hidden()
    assert len(watch.refreshes) == before + 1
    assert dave.page.evaluate("window.parlorAuth.session.accessToken") != stranger


def test_a_refused_refresh_signs_the_user_out_cleanly(
    people: dict[str, Person], local: LocalRun
) -> None:
    carol = people["u-carol"]
    watch = Watch(carol)
    carol.sign_in("carol")
    session = _session(carol)
    # The refresh token is revoked (as an administrator or another device might).
    request = urllib.request.Request(
        f"{local.web}/local/oauth2/revoke", method="POST",
        data=urllib.parse.urlencode({"client_id": "parlor-local",
                                     "token": session["refreshToken"]}).encode())
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200

    # At the next renewal the refusal signs carol out: the sign-in page, a plain
    # message, nothing of the session left, and no more calls to the API.
    expect(carol.page.get_by_role("button", name="Sign in as @carol")).to_be_visible(
        timeout=(LIFETIME + 5) * 1000)
    expect(carol.page.get_by_role("alert")).to_have_text(
        "Your session has ended. Sign in again.")
    assert _session(carol) == {}
    assert carol.page.evaluate("window.parlorBar.live") is False
    assert watch.sockets[-1].is_closed()
    ended_at = time.time()
    time.sleep(3)
    assert [t for t in watch.api_calls if t > ended_at] == []
    # And signing in again works.
    carol.page.get_by_role("button", name="Sign in as @carol").click()
    expect(carol.page.get_by_text("@carol", exact=True)).to_be_visible()


def test_signing_out_revokes_the_refresh_token(people: dict[str, Person],
                                               local: LocalRun) -> None:
    bob = people["u-bob"].sign_in("bob")
    refresh_token = _session(bob)["refreshToken"]
    bob.page.get_by_role("button", name="Sign out").click()
    expect(bob.page.get_by_role("button", name="Sign in as @bob")).to_be_visible()
    assert _session(bob) == {}
    request = urllib.request.Request(
        f"{local.web}/local/oauth2/token", method="POST",
        data=urllib.parse.urlencode({"client_id": "parlor-local", "grant_type": "refresh_token",
                                     "refresh_token": refresh_token}).encode())
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 400
