"""Who may do what, and in which order CloudFormation makes it: one role per function,
each function waiting for its permissions, secrets read and written by whom they must,
API Gateway's account-level logging role."""

from __future__ import annotations

import json
import re

import networkx as nx
import pytest
from aws_cdk.assertions import Template

from tests.infra.templates import (
    FUNCTIONS,
    actions,
    depends_on,
    function,
    one,
    one_id,
    policies_of,
    role_of,
    statements_of,
    variables,
)

pytestmark = pytest.mark.slow


def test_every_function_runs_under_a_role_of_its_own(template: Template) -> None:
    assert set(template.find_resources("AWS::Serverless::Function")) == FUNCTIONS
    roles = {name: role_of(template, name) for name in FUNCTIONS}
    assert len(set(roles.values())) == len(FUNCTIONS), roles
    for role in roles.values():
        assert role in template.find_resources("AWS::IAM::Role")
    assert "replaced-by-cdk" not in json.dumps(template.to_json())


def test_each_function_and_the_key_pair_wait_for_their_permissions(
    template: Template,
) -> None:
    """Policies are resources beside their role: an event source mapping (made after
    its function) or the key pair (which calls its function) must not start before
    the function's permissions exist."""
    for name in FUNCTIONS:
        role = role_of(template, name)
        policies = set(policies_of(template, role))
        assert policies, name
        assert policies | {role} <= depends_on(function(template, name)), name
    key_pair = one(template, "AWS::CloudFormation::CustomResource")
    provisioner = role_of(template, "ProvisionJoinTokenKeys")
    assert set(policies_of(template, provisioner)) <= depends_on(key_pair)


def test_only_the_key_pair_writes_secrets_and_only_the_api_reads_the_signing_key(
    template: Template,
) -> None:
    secrets = template.find_resources("AWS::SecretsManager::Secret")
    private = next(k for k, v in secrets.items() if "signing" in v["Properties"]["Description"])
    public = next(k for k, v in secrets.items()
                  if "verification" in v["Properties"]["Description"])
    # The same provisioner makes Web Push's VAPID key pair (cdk/browser.py).
    vapid = next(k for k, v in secrets.items() if "VAPID" in v["Properties"]["Description"])
    provisioner = role_of(template, "ProvisionJoinTokenKeys")
    writes = {"secretsmanager:PutSecretValue", "secretsmanager:UpdateSecret"}
    for role in template.find_resources("AWS::IAM::Role"):
        for statement in statements_of(template, role):
            if writes & set(actions(statement)):
                assert role == provisioner, (role, statement)
                assert json.dumps(statement["Resource"]) in (
                    json.dumps({"Ref": private}), json.dumps({"Ref": public}),
                    json.dumps({"Ref": vapid}))
    provisioner_statements = json.dumps(statements_of(template, provisioner))
    assert "dynamodb:" not in provisioner_statements, "the provisioner reads no table"
    api = statements_of(template, role_of(template, "APIHandler"))
    assert any("secretsmanager:GetSecretValue" in actions(s) and s["Resource"] == {"Ref": private}
               for s in api)
    assert variables(template, "APIHandler")["JOIN_TOKEN_SECRET_ARN"] == {"Ref": private}
    # Besides the API, only the key-pair resource reads the signing keys: a rotation keeps
    # the previous key beside the new one.
    for name in FUNCTIONS - {"APIHandler", "ProvisionJoinTokenKeys"}:
        reads = [s for s in statements_of(template, role_of(template, name))
                 if "secretsmanager:GetSecretValue" in actions(s)]
        assert private not in json.dumps(reads), name
        assert "JOIN_TOKEN_SECRET_ARN" not in variables(template, name), name


def test_queues_streams_and_connections_are_granted_to_their_handlers_only(
    template: Template,
) -> None:
    def granted(name: str) -> str:
        return json.dumps(statements_of(template, role_of(template, name)))

    # The delivery posts to connections; the connect handler closes a user's oldest.
    for name in ("DeliverAlerts", "WebsocketConnect"):
        assert "execute-api:ManageConnections" in granted(name), name
        assert "WebsocketAPI" in granted(name), name
    for name in FUNCTIONS - {"DeliverAlerts", "WebsocketConnect"}:
        assert "execute-api:ManageConnections" not in granted(name), name
    assert "dynamodb:GetRecords" in granted("HandleSpaceChanges")
    assert "sqs:ReceiveMessage" in granted("HandleMediaEvents")
    for name in ("APIHandler", "WebsocketConnect", "WebsocketDisconnect"):
        assert "sqs:ReceiveMessage" not in granted(name), name
    # Commands come from committed state, through the dispatchers only.
    assert "parlor-media-node-" not in granted("APIHandler"), "the API sends no commands"
    assert "parlor-media-node-" in granted("DispatchMemberCommands")


def test_api_gateway_stages_log_through_the_account_role(template: Template) -> None:
    account_id = one_id(template, "AWS::ApiGateway::Account")
    account = one(template, "AWS::ApiGateway::Account")
    role = account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]
    assert template.find_resources("AWS::IAM::Role")[role]["Properties"][
        "AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "apigateway.amazonaws.com"}
    # SAM makes the REST API's stage after the REST API itself.
    rest_api = one(template, "AWS::Serverless::Api")
    assert account_id in depends_on(rest_api)
    assert "AccessLogSetting" in rest_api["Properties"]
    stage = one(template, "AWS::ApiGatewayV2::Stage")
    assert account_id in depends_on(stage)
    assert "AccessLogSettings" in stage["Properties"]


def _references(value: object) -> set[str]:
    """Logical ids a property refers to; `X.Stage` in a Sub is SAM's reference to X's
    stage, made after X."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
            elif key == "Fn::Sub":
                text = inner if isinstance(inner, str) else inner[0]
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                if not isinstance(inner, str):
                    found |= _references(inner[1])
            else:
                found |= _references(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= _references(inner)
    return found


def test_no_resource_waits_for_itself(template: Template) -> None:
    """The web client's id is in the API function's settings and the site is the
    client's callback: the REST API names its function instead of referring to it,
    or the four would wait for each other."""
    resources = template.to_json()["Resources"]
    graph = nx.DiGraph()
    for key, resource in resources.items():
        graph.add_node(key)
        for target in _references(resource.get("Properties", {})) | depends_on(resource):
            if target in resources:
                graph.add_edge(key, target)
    assert list(nx.simple_cycles(graph)) == []
    uris = json.dumps(one(template, "AWS::Serverless::Api")["Properties"]["DefinitionBody"])
    assert "APIHandler.Arn" not in uris
    assert "function:Parlor-APIHandler/invocations" in uris
    assert function(template, "APIHandler")["Properties"]["FunctionName"] == "Parlor-APIHandler"
