"""The alert pipeline in the synthesized template: sources, queues, DLQs, push."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

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
    assert "execute-api:ManageConnections" in json.dumps(
        template.find_resources("AWS::IAM::Role")["DefaultRole"])


def test_no_push_credentials_no_platform_applications(template: Template) -> None:
    assert template.find_resources("Custom::AWS") == {}
    variables = _function(template, "APIHandler")["Properties"]["Environment"]["Variables"]
    assert "APNS_APPLICATION_ARN" not in variables
    assert "FCM_APPLICATION_ARN" not in variables


def test_push_credentials_make_platform_applications(template_with_push: Template) -> None:
    apps = template_with_push.find_resources("Custom::AWS")
    assert len(apps) == 2
    platforms = sorted(str(a["Properties"]["Create"]) for a in apps.values())
    assert any('"Platform":"APNS"' in p for p in platforms)
    assert any('"Platform":"GCM"' in p for p in platforms)
    for function in ("APIHandler", "DeliverAlerts"):
        variables = _function(template_with_push, function)["Properties"]["Environment"][
            "Variables"]
        assert "Fn::GetAtt" in variables["APNS_APPLICATION_ARN"]
        assert "Fn::GetAtt" in variables["FCM_APPLICATION_ARN"]
    for platform in ("APNS", "GCM"):
        template_with_push.has_resource_properties("AWS::IAM::Policy", {"PolicyDocument": {
            "Statement": Match.array_with([Match.object_like({
                "Action": ["sns:CreatePlatformEndpoint", "sns:DeleteEndpoint", "sns:Publish"],
                "Resource": Match.array_with([Match.object_like({"Fn::Join": Match.array_with([
                    Match.array_with([Match.string_like_regexp(
                        f"endpoint/{platform}/Parlor-")])])})]),
            })])}})
