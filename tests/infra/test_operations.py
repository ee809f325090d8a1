"""What operators are told: a topic CloudWatch can publish to and that reaches a
person, alarms on what breaks Spaces, traces, and names unique to the stack."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Template

from tests.infra.templates import FUNCTIONS, one, one_id

pytestmark = pytest.mark.slow


def _alarmed(template: Template) -> list[tuple[str | None, str | None]]:
    alarms = template.find_resources("AWS::CloudWatch::Alarm").values()
    found = [(a["Properties"].get("Namespace"), a["Properties"].get("MetricName"))
             for a in alarms]
    for alarm in alarms:
        for query in alarm["Properties"].get("Metrics", []):
            if "MetricStat" in query:
                metric = query["MetricStat"]["Metric"]
                found.append((metric["Namespace"], metric["MetricName"]))
    return found


def test_cloudwatch_may_publish_to_the_alarm_topic(template: Template) -> None:
    topic = one(template, "AWS::SNS::Topic")["Properties"]
    key_id = one_id(template, "AWS::KMS::Key")
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    key = one(template, "AWS::KMS::Key")["Properties"]
    assert key["EnableKeyRotation"] is True
    (cloudwatch,) = [s for s in key["KeyPolicy"]["Statement"]
                     if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert set(cloudwatch["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}


def test_alarms_are_mailed_to_the_operator(
    template: Template, full_template: Template,
) -> None:
    template.resource_count_is("AWS::SNS::Subscription", 0)
    subscription = one(full_template, "AWS::SNS::Subscription")["Properties"]
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", "ops@example.com")
    assert subscription["TopicArn"] == {"Ref": one_id(full_template, "AWS::SNS::Topic")}


def test_alarms_watch_what_breaks_spaces(template: Template) -> None:
    alarmed = _alarmed(template)
    for metric in (("ECS/ContainerInsights", "RunningTaskCount"),
                   ("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count"),
                   ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count"),
                   ("AWS/ApplicationELB", "UnHealthyHostCount"),
                   ("AWS/ApiGateway", "5XXError"), ("AWS/ApiGateway", "4XXError"),
                   ("AWS/WAFV2", "BlockedRequests"),
                   ("AWS/DynamoDB", "ReadThrottleEvents"),
                   ("AWS/DynamoDB", "WriteThrottleEvents"),
                   ("Parlor/Media", "Participants")):
        assert metric in alarmed, metric
    assert alarmed.count(("AWS/Lambda", "Throttles")) == len(FUNCTIONS)
    assert alarmed.count(("AWS/Lambda", "Errors")) == len(FUNCTIONS)
    assert alarmed.count(("ECS/ContainerInsights", "RunningTaskCount")) == 2, "nodes and TURN"
    assert alarmed.count(("AWS/DynamoDB", "ReadThrottleEvents")) == len(
        template.find_resources("AWS::DynamoDB::Table"))
    for alarm in template.find_resources("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"], "every alarm notifies the topic"
    api = [a["Properties"] for a in template.find_resources("AWS::CloudWatch::Alarm").values()
           if a["Properties"].get("Namespace") == "AWS/ApiGateway"]
    for alarm in api:
        assert {"Name": "ApiName", "Value": "Parlor-api"} in alarm["Dimensions"]
    assert one(template, "AWS::Serverless::Api")["Properties"]["Name"] == "Parlor-api"


def test_functions_are_traced(template: Template) -> None:
    for name, function in template.find_resources("AWS::Serverless::Function").items():
        assert function["Properties"]["Tracing"] == "Active", name


def test_the_dashboard_is_named_for_the_stack_and_region(template: Template) -> None:
    dashboard = one(template, "AWS::CloudWatch::Dashboard")["Properties"]
    assert dashboard["DashboardName"] == "Parlor-us-east-1"
    assert "Parlor/Media" in json.dumps(dashboard["DashboardBody"])
