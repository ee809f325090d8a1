"""Every route needs a valid bearer token from the configured issuer."""

from __future__ import annotations

import time

import jwt
import pytest

from local.issuer import LocalIssuer
from tests.conftest import ISSUER
from tests.functional.conftest import World

NOW = int(time.time())


def _unsigned(claims: dict[str, object]) -> str:
    return jwt.encode(claims, key=None, algorithm="none")  # type: ignore[arg-type]


BAD_TOKENS = {
    "expired": (ISSUER.mint("u-alice", ttl_seconds=-10), "token_expired"),
    "other key": (LocalIssuer.generate().mint("u-alice"), "invalid_token"),
    "other issuer": (LocalIssuer(ISSUER._key, issuer="https://evil.example").mint("u-alice"),
                     "invalid_token"),
    "no signature": (_unsigned({"iss": ISSUER.issuer, "sub": "u-alice", "exp": NOW + 60}),
                     "invalid_token"),
    "garbage": ("not.a.jwt", "invalid_token"),
}


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
def test_bad_tokens_are_401(world: World, name: str) -> None:
    token, code = BAD_TOKENS[name]
    reply = world.caller(None, token=token).get("/me")
    assert reply.status == 401
    assert reply.json["error"] == code


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Bearer  "])
def test_missing_or_malformed_authorization_is_401(world: World, header: str | None) -> None:
    caller = world.caller(None, token="")
    headers = {} if header is None else {"Authorization": header}
    reply = caller.call("GET", "/spaces/live", headers=headers)
    assert reply.status == 401
    assert reply.json["error"] == "missing_token"


def test_nothing_happens_without_a_token(world: World) -> None:
    reply = world.caller(None, token="").post("/spaces", {"title": "sneaky"})
    assert reply.status == 401
    assert world.user("alice").get("/spaces/live").json["items"] == []
