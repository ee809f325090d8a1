"""A node verifies join tokens against a key set that rotates: the current and the
previous key, read again from Secrets Manager when a token names a key it does not hold
(at most once per interval, so made-up key ids cost little), and kept when that read
fails."""

from __future__ import annotations

import time
import uuid
from typing import Any

import boto3
import jwt
import pytest

from chalicelib.media.jointoken import (
    SigningKey,
    new_signing_key,
    public_set_document,
    rotate_secrets,
    write_key_sets,
)
from media_node import tokens
from media_node.tokens import TokenError, TokenVerifier, secrets_manager_reader

from .conftest import Aws

SPACE = "sp_keys"


def _token(key: SigningKey, kid: str | None = None) -> str:
    now = int(time.time())
    claims = {"iss": "parlor-control-plane", "aud": "parlor-media", "sub": "u-a",
              "space": SPACE, "role": "listener", "node": "node-a", "iat": now,
              "exp": now + 60, "jti": uuid.uuid4().hex}
    headers = {"kid": key.kid if kid is None else kid}
    return "Bearer " + jwt.encode(claims, key.key, algorithm="EdDSA", headers=headers)


class Reads:
    def __init__(self, document: str) -> None:
        self.document = document
        self.count = 0
        self.fail = False

    def __call__(self) -> str:
        self.count += 1
        if self.fail:
            raise ConnectionError("Secrets Manager is unreachable")
        return self.document


def test_current_and_previous_keys_verify_and_a_kidless_token_tries_both() -> None:
    current, previous = new_signing_key(), new_signing_key()
    verifier = TokenVerifier(public_set_document([current, previous]), "node-a")
    assert verifier.key_ids == [current.kid, previous.kid]
    for key in (current, previous):
        assert verifier.verify(_token(key), SPACE).user_id == "u-a"
        without_kid = jwt.encode(jwt.decode(_token(key)[7:], options={"verify_signature": False}),
                                 key.key, algorithm="EdDSA")
        assert verifier.verify(f"Bearer {without_kid}", SPACE).user_id == "u-a"
    # A token that claims the current key's id but is signed by another key fails.
    with pytest.raises(TokenError) as refused:
        verifier.verify(_token(new_signing_key(), kid=current.kid), SPACE)
    assert refused.value.code == "invalid_token"


def test_a_pem_key_has_the_control_planes_key_id() -> None:
    key = new_signing_key()
    verifier = TokenVerifier(key.public_pem(), "node-a")
    assert verifier.key_ids == [key.kid]
    assert verifier.verify(_token(key), SPACE).user_id == "u-a"


def test_an_unknown_kid_reads_the_set_again_once_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = new_signing_key()
    reads = Reads(public_set_document([old]))
    verifier = TokenVerifier(public_set_document([old]), "node-a", reads)
    for _ in range(20):
        with pytest.raises(TokenError):
            verifier.verify(_token(new_signing_key()), SPACE)
    assert reads.count == 1
    # The control plane rotates: the first token of the new key admits its holder once
    # the interval since the last read has passed.
    new = new_signing_key()
    reads.document = public_set_document([new, old])
    monkeypatch.setattr(tokens, "REFRESH_SECONDS", 0.0)
    assert verifier.verify(_token(new), SPACE).user_id == "u-a"
    assert verifier.verify(_token(old), SPACE).user_id == "u-a"
    assert reads.count == 2


def test_a_failed_read_keeps_the_keys_held(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "REFRESH_SECONDS", 0.0)
    held = new_signing_key()
    reads = Reads(public_set_document([held]))
    verifier = TokenVerifier("", "node-a", reads)
    reads.fail = True
    with pytest.raises(TokenError):
        verifier.verify(_token(new_signing_key()), SPACE)
    assert verifier.verify(_token(held), SPACE).user_id == "u-a"


@pytest.fixture
def key_secrets(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str, str]:
    # This package's moto server, not an in-process mock: starting and stopping one
    # resets moto's state, the server's tables with it, under the other tests' nodes.
    for name, value in aws.env.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("secretsmanager")
    suffix = uuid.uuid4().hex[:6]
    private = client.create_secret(Name=f"join-private-{suffix}", SecretString="x")["ARN"]
    public = client.create_secret(Name=f"join-public-{suffix}", SecretString="x")["ARN"]
    return client, private, public


def test_a_rotation_in_secrets_manager_reaches_the_node(
    key_secrets: tuple[Any, str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, private, public = key_secrets
    first = new_signing_key()
    write_key_sets(client, private, public, [first])
    verifier = TokenVerifier("", "node-a", secrets_manager_reader(public))
    minted_before = _token(first)
    second = rotate_secrets(client, private, public)[0]
    monkeypatch.setattr(tokens, "REFRESH_SECONDS", 0.0)
    # The token minted just before the rotation, used just after; then the new key's.
    assert verifier.verify(minted_before, SPACE).user_id == "u-a"
    assert verifier.verify(_token(second), SPACE).user_id == "u-a"
    assert verifier.key_ids == [second.kid, first.kid]
