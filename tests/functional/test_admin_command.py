"""`make admin USER=...`: the first administrator of a deployed stack, found through the
stack's UserPoolId output, against moto's CloudFormation and Cognito."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ops import admin


@pytest.fixture
def deployed() -> Iterator[tuple[Any, str]]:
    with mock_aws():
        cognito = boto3.client("cognito-idp")
        pool = cognito.create_user_pool(PoolName="parlor", UsernameAttributes=["email"])
        pool_id = pool["UserPool"]["Id"]
        cognito.admin_create_user(
            UserPoolId=pool_id, Username="alice@example.org",
            UserAttributes=[{"Name": "email", "Value": "alice@example.org"}])
        template = {
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {"UserPoolId": {"Value": pool_id}},
        }
        boto3.client("cloudformation").create_stack(StackName="Parlor",
                                                    TemplateBody=json.dumps(template))
        yield cognito, pool_id


def _groups(cognito: Any, pool_id: str, email: str) -> list[str]:
    username = admin.username_of(pool_id, email, cognito)
    groups = cognito.admin_list_groups_for_user(UserPoolId=pool_id, Username=username)
    return [g["GroupName"] for g in groups["Groups"]]


def test_the_first_admin_is_made_from_the_stacks_user_pool(
    deployed: tuple[Any, str], capsys: pytest.CaptureFixture[str],
) -> None:
    cognito, pool_id = deployed
    assert admin.main(["alice@example.org"]) == 0
    assert _groups(cognito, pool_id, "alice@example.org") == ["admin"]
    assert "is now in the 'admin' group" in capsys.readouterr().out
    # Again: the group exists already, nothing fails.
    assert admin.main(["alice@example.org", "--user-pool-id", pool_id]) == 0
    assert admin.main(["alice@example.org", "--remove"]) == 0
    assert _groups(cognito, pool_id, "alice@example.org") == []


def test_what_is_not_there_is_said_plainly(
    deployed: tuple[Any, str], capsys: pytest.CaptureFixture[str],
) -> None:
    _, pool_id = deployed
    assert admin.main(["nobody@example.org"]) == 1
    assert "no user with the email 'nobody@example.org'" in capsys.readouterr().err
    assert admin.main(["alice@example.org", "--stack", "Elsewhere"]) == 1
    assert "no stack 'Elsewhere'" in capsys.readouterr().err
    assert admin.main(["no-such-username", "--user-pool-id", pool_id]) == 1
    assert "no user 'no-such-username'" in capsys.readouterr().err
