"""The synthesized CloudFormation template (the `template` fixture: conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from chalicelib.platform.models import table_specs

pytestmark = pytest.mark.slow


def _key_schema(hash_key: tuple[str, str], range_key: tuple[str, str] | None) -> list[Any]:
    schema = [{"AttributeName": hash_key[0], "KeyType": "HASH"}]
    if range_key:
        schema.append({"AttributeName": range_key[0], "KeyType": "RANGE"})
    return schema


def test_every_model_has_its_table_with_the_same_keys(template: Template) -> None:
    specs = table_specs()
    assert len(template.find_resources("AWS::DynamoDB::Table")) == len(specs)
    for spec in specs:
        indexes = [Match.object_like({"IndexName": i.name,
                                      "KeySchema": _key_schema(i.hash_key, i.range_key),
                                      "Projection": {"ProjectionType": i.projection}})
                   for i in spec.indexes]
        template.has_resource_properties("AWS::DynamoDB::Table", {
            "KeySchema": _key_schema(spec.hash_key, spec.range_key),
            "BillingMode": "PAY_PER_REQUEST",
            "SSESpecification": {"SSEEnabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            **({"GlobalSecondaryIndexes": Match.array_with(indexes)} if indexes else {}),
            **({"StreamSpecification": {"StreamViewType": spec.stream}} if spec.stream else {}),
            **({"TimeToLiveSpecification": {"AttributeName": spec.ttl_attribute,
                                            "Enabled": True}}
               if spec.ttl_attribute else {}),
        })


def _functions(template: Template) -> dict[str, Any]:
    return template.find_resources("AWS::Serverless::Function")


def test_every_function_gets_table_names_and_the_issuer(template: Template) -> None:
    functions = _functions(template)
    assert set(functions) == {"APIHandler", "HandleMediaEvents", "HandleSpaceChanges",
                              "FanOutAlerts", "DeliverAlerts", "WebsocketConnect",
                              "WebsocketDisconnect", "ProvisionJoinTokenKeys",
                              "DispatchMemberCommands", "DispatchSpaceCommands",
                              "EndAbandonedSpaces", "SettleHls"}
    for function in functions.values():
        variables = function["Properties"]["Environment"]["Variables"]
        for spec in table_specs():
            assert "Ref" in variables[spec.env_var], spec.env_var
        assert variables["HOSTING_FOLLOWER_THRESHOLD"] == "600"
        assert "Fn::Join" in variables["AUTH_ISSUER"]
    template.resource_count_is("AWS::Cognito::UserPool", 1)
    template.resource_count_is("AWS::Cognito::UserPoolClient", 1)


def test_media_events_reach_the_handler_with_partial_failures_and_a_dlq(
    template: Template,
) -> None:
    source = _functions(template)["HandleMediaEvents"]["Properties"]["Events"][
        "HandleMediaEventsSqsEventSource"]
    assert source["Type"] == "SQS"
    assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queues = template.find_resources("AWS::SQS::Queue")
    (queue_id,) = [k for k in queues if k.startswith("MessagingMediaEvents")
                   and "Dlq" not in k]
    assert source["Properties"]["Queue"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    redrive = queues[queue_id]["Properties"]["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == 5
