"""The custom resource that makes the join-token key pair at deploy time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import jwt
import pytest
from moto import mock_aws

from chalicelib.jointoken import provision_key_pair


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


def test_create_writes_a_matching_pair(secrets: tuple[str, str]) -> None:
    private, public = secrets
    result = provision_key_pair(_event("Create", private, public, "1"))
    assert result["PhysicalResourceId"].startswith("join-token-keys-")
    private_pem, public_pem = _keys(private, public)
    token = jwt.encode({"sub": "u"}, private_pem, algorithm="EdDSA")
    assert jwt.decode(token, public_pem, algorithms=["EdDSA"]) == {"sub": "u"}


def test_a_new_generation_rotates_and_the_same_one_keeps(secrets: tuple[str, str]) -> None:
    private, public = secrets
    provision_key_pair(_event("Create", private, public, "1"))
    first = _keys(private, public)
    provision_key_pair(_event("Update", private, public, "1", old="1"))
    assert _keys(private, public) == first
    provision_key_pair(_event("Update", private, public, "2", old="1"))
    second = _keys(private, public)
    assert second[0] != first[0]
    assert second[1] != first[1]
    provision_key_pair(_event("Delete", private, public, "2"))
    assert _keys(private, public) == second
