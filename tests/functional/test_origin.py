"""Requests reach the API through the site's origin only, when the deployment names an
origin secret: a request without the header, or with a wrong value, is refused before
any route runs; the secret comes inline or from Secrets Manager, whose rotation reaches
a warm app, and whose failure refuses rather than lets through."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from chalicelib.access import origin
from chalicelib.platform.config import settings
from tests.functional.conftest import World

HEADER = "x-origin-check"


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("ORIGIN_HEADER_NAME", HEADER)
    yield monkeypatch
    settings.cache_clear()
    origin.forget()


def _configure(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings.cache_clear()
    origin.forget()


def test_off_when_no_secret_is_configured(world: World) -> None:
    assert world.user("alice").get("/spaces/live").status == 200


def test_an_unsigned_request_is_refused_before_anything_else(
    world: World, configured: pytest.MonkeyPatch,
) -> None:
    alice = world.user("alice")
    _configure(configured, ORIGIN_SECRET="s3cret-value")
    refused = alice.get("/spaces/live")
    assert (refused.status, refused.json["error"]) == (403, "origin_required")
    # Before authentication: no token at all gets the same answer, not a 401.
    anonymous = world.caller(None, token="").get("/me")
    assert (anonymous.status, anonymous.json["error"]) == (403, "origin_required")
    wrong = alice.call("GET", "/spaces/live", headers={HEADER: "guess"})
    assert (wrong.status, wrong.json["error"]) == (403, "origin_required")
    signed = alice.call("GET", "/spaces/live", headers={HEADER: "s3cret-value"})
    assert signed.status == 200
    # Header names are case-insensitive, as HTTP has them.
    assert alice.call("GET", "/spaces/live", headers={HEADER.upper(): "s3cret-value"}).status \
        == 200


def test_the_secret_from_secrets_manager_and_its_rotation(
    world: World, configured: pytest.MonkeyPatch,
) -> None:
    alice = world.user("alice")
    secrets = boto3.client("secretsmanager")
    arn = secrets.create_secret(Name="origin", SecretString="first")["ARN"]
    _configure(configured, ORIGIN_SECRET_ARN=arn)
    assert alice.call("GET", "/spaces/live", headers={HEADER: "first"}).status == 200
    secrets.put_secret_value(SecretId=arn, SecretString='{"secret": "second"}')
    # The edge sends the new value at once; a mismatch re-reads the secret (once the
    # cached value is a few seconds old), so the rotation does not lock the site out.
    configured.setattr(origin, "MISMATCH_REREAD_SECONDS", 0.0)
    assert alice.call("GET", "/spaces/live", headers={HEADER: "second"}).status == 200
    refused = alice.call("GET", "/spaces/live", headers={HEADER: "first"})
    assert (refused.status, refused.json["error"]) == (403, "origin_required")


def test_an_unreadable_secret_refuses_with_503(
    world: World, configured: pytest.MonkeyPatch,
) -> None:
    alice = world.user("alice")
    missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:gone-AbCdEf"
    _configure(configured, ORIGIN_SECRET_ARN=missing)
    reply = alice.call("GET", "/spaces/live", headers={HEADER: "anything"})
    assert (reply.status, reply.json["error"]) == (503, "origin_check_unavailable")


def test_the_previous_secret_passes_while_the_edge_takes_up_a_new_one(
    world: World, configured: pytest.MonkeyPatch,
) -> None:
    """The stack rotates the origin secret by making a new one (generation N) and
    keeping the previous (N-1) for the minutes CloudFront takes to send the new one."""
    alice = world.user("alice")
    secrets = boto3.client("secretsmanager")
    old = secrets.create_secret(Name="origin-1", SecretString="one")["ARN"]
    new = secrets.create_secret(Name="origin-2", SecretString="two")["ARN"]
    _configure(configured, ORIGIN_SECRET_ARN=new, ORIGIN_PREVIOUS_SECRET_ARN=old)
    for value in ("one", "two"):
        assert alice.call("GET", "/spaces/live", headers={HEADER: value}).status == 200
    refused = alice.call("GET", "/spaces/live", headers={HEADER: "zero"})
    assert (refused.status, refused.json["error"]) == (403, "origin_required")
