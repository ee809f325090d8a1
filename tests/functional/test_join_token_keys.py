"""The custom resource that makes the join-token key pair at deploy time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import jwt
import pytest
from moto import mock_aws

from chalicelib.media.jointoken import mint, new_key_pair, parse_private_set, provision_key_pair
from chalicelib.platform.config import ConfigError, settings
from media_node.tokens import TokenError, TokenVerifier


@pytest.fixture
def secrets() -> Iterator[tuple[str, str]]:
    with mock_aws():
        client = boto3.client("secretsmanager")
        private = client.create_secret(Name="private", SecretString="placeholder")["ARN"]
        public = client.create_secret(Name="public", SecretString="placeholder")["ARN"]
        yield private, public


def _event(kind: str, private: str, public: str, generation: str,
           old: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "RequestType": kind,
        "ResourceProperties": {"PrivateKeySecretArn": private, "PublicKeySecretArn": public,
                               "Generation": generation},
    }
    if kind != "Create":
        event["PhysicalResourceId"] = "join-token-keys-1"
    if old is not None:
        event["OldResourceProperties"] = {**event["ResourceProperties"], "Generation": old}
    return event


def _keys(private: str, public: str) -> tuple[str, str]:
    client = boto3.client("secretsmanager")
    return (client.get_secret_value(SecretId=private)["SecretString"],
            client.get_secret_value(SecretId=public)["SecretString"])


def _token(private_set: str) -> str:
    signing = parse_private_set(private_set)[0]
    return jwt.encode(CLAIMS, signing.key, algorithm="EdDSA", headers={"kid": signing.kid})


CLAIMS = {"iss": "parlor-control-plane", "aud": "parlor-media", "sub": "u", "space": "sp_x",
          "role": "listener", "node": "node-a", "jti": "j", "iat": 0, "exp": 2**40}


def test_create_writes_a_matching_pair(secrets: tuple[str, str]) -> None:
    private, public = secrets
    result = provision_key_pair(_event("Create", private, public, "1"))
    assert result["PhysicalResourceId"].startswith("join-token-keys-")
    private_set, public_set = _keys(private, public)
    verifier = TokenVerifier(public_set, "node-a")
    assert verifier.verify(f"Bearer {_token(private_set)}", "sp_x").user_id == "u"
    assert verifier.key_ids == [result["Data"]["KeyId"]]
    assert "PRIVATE" not in public_set


def test_a_new_generation_rotates_and_keeps_the_previous_key(secrets: tuple[str, str]) -> None:
    private, public = secrets
    provision_key_pair(_event("Create", private, public, "1"))
    first = _keys(private, public)
    before_rotation = _token(first[0])
    provision_key_pair(_event("Update", private, public, "1", old="1"))
    assert _keys(private, public) == first
    provision_key_pair(_event("Update", private, public, "2", old="1"))
    second = _keys(private, public)
    assert second != first
    verifier = TokenVerifier(second[1], "node-a")
    # The new key signs; a token of the key before it still verifies.
    assert parse_private_set(second[0])[1].kid == parse_private_set(first[0])[0].kid
    assert verifier.verify(f"Bearer {_token(second[0])}", "sp_x").user_id == "u"
    assert verifier.verify(f"Bearer {before_rotation}", "sp_x").user_id == "u"
    # Two rotations on, the first key is gone from both sets.
    provision_key_pair(_event("Update", private, public, "3", old="2"))
    third = _keys(private, public)
    assert len(parse_private_set(third[0])) == 2
    with pytest.raises(TokenError):
        TokenVerifier(third[1], "node-a").verify(f"Bearer {before_rotation}", "sp_x")
    provision_key_pair(_event("Delete", private, public, "3"))
    assert _keys(private, public) == third


def test_a_rotation_over_a_placeholder_makes_a_first_key(secrets: tuple[str, str]) -> None:
    # A stack that predates key sets updates its resource: the secrets hold a bare PEM,
    # or CloudFormation's placeholder.
    private, public = secrets
    provision_key_pair(_event("Update", private, public, "2", old="1"))
    assert len(parse_private_set(_keys(private, public)[0])) == 1
    legacy, _ = new_key_pair()
    boto3.client("secretsmanager").put_secret_value(SecretId=private, SecretString=legacy)
    provision_key_pair(_event("Update", private, public, "3", old="2"))
    kept = parse_private_set(_keys(private, public)[0])
    assert kept[1].private_pem() == legacy


def test_the_api_signs_with_the_current_key_and_rereads_the_secret(
    secrets: tuple[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    private, public = secrets
    provision_key_pair(_event("Create", private, public, "1"))
    monkeypatch.delenv("JOIN_TOKEN_PRIVATE_KEY")
    monkeypatch.setenv("JOIN_TOKEN_SECRET_ARN", private)
    monkeypatch.setenv("JOIN_TOKEN_KEY_CACHE_SECONDS", "3600")
    settings.cache_clear()
    try:
        first_kid = parse_private_set(_keys(private, public)[0])[0].kid
        token, _ = mint("u", "sp_x", "listener", "node-a", False, 0)
        assert jwt.get_unverified_header(token)["kid"] == first_kid
        provision_key_pair(_event("Update", private, public, "2", old="1"))
        # Within the cache's life a warm API signs with the key it read...
        token, _ = mint("u", "sp_x", "listener", "node-a", False, 0)
        assert jwt.get_unverified_header(token)["kid"] == first_kid
        # ...and once it is older than JOIN_TOKEN_KEY_CACHE_SECONDS, with the new one.
        monkeypatch.setenv("JOIN_TOKEN_KEY_CACHE_SECONDS", "0")
        settings.cache_clear()
        token, _ = mint("u", "sp_x", "listener", "node-a", False, 0)
        new_kid = jwt.get_unverified_header(token)["kid"]
        assert new_kid != first_kid
        verifier = TokenVerifier(_keys(private, public)[1], "node-a")
        assert verifier.key_ids == [new_kid, first_kid]
        assert verifier.verify(f"Bearer {token}", "sp_x").user_id == "u"
    finally:
        settings.cache_clear()


def test_an_unreadable_key_secret_is_a_clear_error(
    secrets: tuple[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    private, _ = secrets
    boto3.client("secretsmanager").put_secret_value(SecretId=private, SecretString="junk")
    monkeypatch.delenv("JOIN_TOKEN_PRIVATE_KEY")
    monkeypatch.setenv("JOIN_TOKEN_SECRET_ARN", private)
    monkeypatch.setenv("JOIN_TOKEN_KEY_CACHE_SECONDS", "0")
    settings.cache_clear()
    try:
        with pytest.raises(ConfigError):
            mint("u", "sp_x", "listener", "node-a", False, 0)
    finally:
        settings.cache_clear()
