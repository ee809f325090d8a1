"""Commands from committed state in the synthesized template: the dispatchers on both
tables' streams, with partial failures, retries and an on-failure queue; only they may
send to the nodes' command queues; the abandoned-Space sweep on a schedule; and the
media nodes reading (never writing) the tables they reconcile with."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Template

from tests.infra.templates import FUNCTIONS, actions, function, role_of, statements_of

pytestmark = pytest.mark.slow

DISPATCHERS = [("DispatchMemberCommands", "DataMember"), ("DispatchSpaceCommands", "DataSpace")]


def _table_id(template: Template, prefix: str) -> str:
    (found,) = [k for k in template.find_resources("AWS::DynamoDB::Table")
                if k.startswith(prefix)]
    return found


def _sends_commands(statement: dict[str, Any]) -> bool:
    return "sqs:SendMessage" in actions(statement) and "parlor-media-node-" in str(
        statement["Resource"])


@pytest.mark.parametrize(("name", "table"), DISPATCHERS)
def test_each_stream_feeds_its_dispatcher_with_retries_and_an_on_failure_queue(
    template: Template, name: str, table: str
) -> None:
    source = function(template, name)["Properties"]["Events"][f"{name}DynamodbEventSource"]
    props = source["Properties"]
    assert source["Type"] == "DynamoDB"
    assert props["Stream"] == {"Fn::GetAtt": [_table_id(template, table), "StreamArn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["MaximumRetryAttempts"] == 5
    assert props["BisectBatchOnFunctionError"] is True
    (dlq,) = [k for k in template.find_resources("AWS::SQS::Queue")
              if k.startswith("CommandsCommandDlq")]
    assert props["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS", "Destination": {"Fn::GetAtt": [dlq, "Arn"]}}
    assert any(_sends_commands(s) for s in statements_of(template, role_of(template, name)))


def test_the_members_table_has_a_stream_of_both_images(template: Template) -> None:
    table = template.find_resources("AWS::DynamoDB::Table")[_table_id(template, "DataMember")]
    assert table["Properties"]["StreamSpecification"] == {
        "StreamViewType": "NEW_AND_OLD_IMAGES"}


def test_only_the_dispatchers_send_commands(template: Template) -> None:
    senders = {name for name in FUNCTIONS
               if any(_sends_commands(s) for s in statements_of(template, role_of(template, name)))}
    assert senders == {"DispatchMemberCommands", "DispatchSpaceCommands"}


def test_the_sweep_runs_every_minute(template: Template) -> None:
    events = function(template, "EndAbandonedSpaces")["Properties"]["Events"]
    (schedule,) = events.values()
    assert schedule["Type"] == "Schedule"
    assert schedule["Properties"]["Schedule"] == "rate(1 minute)"


def test_the_nodes_read_the_spaces_and_members_they_hold_and_write_neither(
    template: Template,
) -> None:
    (task_id, task), = [(k, v) for k, v in template.find_resources("AWS::ECS::TaskDefinition")
                        .items() if k.startswith("MediaTask")]
    (container,) = task["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    role = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    statements = statements_of(template, role)
    for prefix, variable in (("DataSpace", "SPACES_TABLE"), ("DataMember", "MEMBERS_TABLE")):
        table = _table_id(template, prefix)
        assert env[variable] == {"Ref": table}
        reach = [s for s in statements if table in str(s["Resource"])]
        assert reach, f"the nodes cannot read {variable}"
        assert {a for s in reach for a in actions(s)} == {
            "dynamodb:GetItem", "dynamodb:BatchGetItem"}, task_id


def test_the_nodes_reread_a_rotated_key_set_and_check_no_private_candidates(
    template: Template,
) -> None:
    (task,) = [v for k, v in template.find_resources("AWS::ECS::TaskDefinition").items()
               if k.startswith("MediaTask")]
    (container,) = task["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    (public,) = [k for k, v in template.find_resources("AWS::SecretsManager::Secret").items()
                 if "verification" in v["Properties"]["Description"]]
    assert env["JOIN_TOKEN_PUBLIC_KEY_SECRET_ARN"] == {"Ref": public}
    role = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    assert any("secretsmanager:GetSecretValue" in actions(s) and s["Resource"] == {"Ref": public}
               for s in statements_of(template, role))
    assert "CidrBlock" in str(env["PRIVATE_NETWORKS"])
