"""The alert pipeline in the synthesized template: sources, queues, DLQs, push."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from cdk.stack import ParlorStack
from tests.infra.conftest import PUSH_SECRET
from tests.infra.templates import actions, role_of, statements_of

pytestmark = pytest.mark.slow


def _function(template: Template, name: str) -> dict[str, Any]:
    return template.find_resources("AWS::Serverless::Function")[name]  # type: ignore[no-any-return]


def _queue_id(template: Template, prefix: str) -> str:
    (found,) = [k for k in template.find_resources("AWS::SQS::Queue")
                if k.startswith(prefix) and "Dlq" not in k]
    return found


def test_the_spaces_stream_feeds_the_trigger_handler_with_partial_failures(
    template: Template,
) -> None:
    source = _function(template, "HandleSpaceChanges")["Properties"]["Events"][
        "HandleSpaceChangesDynamodbEventSource"]
    props = source["Properties"]
    assert source["Type"] == "DynamoDB"
    (table_id,) = [k for k in template.find_resources("AWS::DynamoDB::Table")
                   if k.startswith("DataSpace")]
    assert props["Stream"] == {"Fn::GetAtt": [table_id, "StreamArn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["MaximumRetryAttempts"] == 5
    assert props["BisectBatchOnFunctionError"] is True
    dlq = [k for k in template.find_resources("AWS::SQS::Queue")
           if k.startswith("AlertsStreamDlq")]
    assert props["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS", "Destination": {"Fn::GetAtt": [dlq[0], "Arn"]}}


@pytest.mark.parametrize(("function", "prefix"), [("FanOutAlerts", "AlertsFanout"),
                                                    ("DeliverAlerts", "AlertsDelivery")])
def test_each_queue_reaches_its_handler_with_partial_failures_and_a_dlq(
    template: Template, function: str, prefix: str
) -> None:
    props = _function(template, function)["Properties"]
    source = props["Events"][f"{function}SqsEventSource"]["Properties"]
    queue_id = _queue_id(template, prefix)
    assert source["Queue"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = template.find_resources("AWS::SQS::Queue")[queue_id]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
    assert queue["VisibilityTimeout"] == 6 * props["Timeout"]
    variables = props["Environment"]["Variables"]
    assert variables["ALERT_FANOUT_QUEUE_URL"] == {"Ref": _queue_id(template, "AlertsFanout")}
    assert variables["ALERT_DELIVERY_QUEUE_URL"] == {
        "Ref": _queue_id(template, "AlertsDelivery")}


def test_the_delivery_posts_to_the_websocket_api(template: Template) -> None:
    variables = _function(template, "DeliverAlerts")["Properties"]["Environment"]["Variables"]
    assert variables["WEBSOCKET_API_ID"] == {"Ref": "WebsocketAPI"}
    (statement,) = [s for s in statements_of(template, role_of(template, "DeliverAlerts"))
                    if "execute-api:ManageConnections" in actions(s)]
    assert '{"Ref": "WebsocketAPI"}, "/api/*/@connections/*"' in json.dumps(statement)


def test_no_push_secret_no_platform_applications(template: Template) -> None:
    assert template.find_resources("Custom::SnsPlatformApplication") == {}
    assert template.find_resources("Custom::AWS") == {}
    variables = _function(template, "APIHandler")["Properties"]["Environment"]["Variables"]
    assert "APNS_APPLICATION_ARN" not in variables
    assert "FCM_APPLICATION_ARN" not in variables


def test_push_credentials_stay_in_their_secret(full_template: Template) -> None:
    """The template names the operator's secret; the provider reads it at deploy time."""
    apps = full_template.find_resources("Custom::SnsPlatformApplication")
    assert sorted(a["Properties"]["Platform"] for a in apps.values()) == ["APNS", "GCM"]
    for app in apps.values():
        assert app["Properties"]["SecretArn"] == PUSH_SECRET
        assert set(app["Properties"]) == {"ServiceToken", "Name", "Platform", "SecretArn",
                                          "Key", "Generation"}
    assert "PlatformCredential" not in json.dumps(full_template.to_json())
    for function in ("APIHandler", "DeliverAlerts"):
        variables = _function(full_template, function)["Properties"]["Environment"][
            "Variables"]
        assert "Fn::GetAtt" in variables["APNS_APPLICATION_ARN"]
        assert "Fn::GetAtt" in variables["FCM_APPLICATION_ARN"]
    # The provider reads that secret, and manages only this stack's applications.
    provider = [f for f in full_template.find_resources("AWS::Lambda::Function").values()
                if f["Properties"].get("Handler") == "index.on_event"]
    (function,) = provider
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = statements_of(full_template, role)
    (reads,) = [s for s in statements if "secretsmanager:GetSecretValue" in actions(s)]
    assert reads["Resource"] == PUSH_SECRET
    (manages,) = [s for s in statements if "sns:CreatePlatformApplication" in actions(s)]
    assert "*" not in manages["Resource"]
    text = json.dumps(manages["Resource"])
    assert ":app/APNS/Parlor-apns" in text
    assert ":app/GCM/Parlor-fcm" in text
    delivers = statements_of(full_template, role_of(full_template, "DeliverAlerts"))
    pushes = [s for s in delivers if "sns:Publish" in actions(s)]
    for statement in pushes:
        assert actions(statement) == ["sns:Publish", "sns:DeleteEndpoint"]
    for platform, key in (("APNS", "apns"), ("GCM", "fcm")):
        assert f"endpoint/{platform}/Parlor-{key}" in json.dumps(pushes)


def test_push_credentials_as_context_are_refused() -> None:
    app = cdk.App(context={"push": {"fcm": {"PlatformCredential": "x"}}})
    with pytest.raises(ValueError, match="push_secret"):
        ParlorStack(app, "Parlor", env=cdk.Environment(region="us-east-1"))
