"""What `cdk deploy` creates, checked on the synthesized template: keys, media service,
the one-origin site, API limits and logs, operations; then cdk-nag and cfn-lint."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks

from cdk.stack import ParlorStack
from tests.infra.conftest import FULL_CONTEXT

pytestmark = pytest.mark.slow


def _one(template: Template, kind: str, props: dict[str, Any] | None = None) -> dict[str, Any]:
    found = template.find_resources(kind, {"Properties": props} if props else None)
    assert len(found) == 1, (kind, list(found))
    return next(iter(found.values()))  # type: ignore[no-any-return]


def _policies_of(template: Template, role_ref: str) -> list[dict[str, Any]]:
    statements = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        roles = policy["Properties"].get("Roles", [])
        if {"Ref": role_ref} in roles:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _media_task(template: Template) -> dict[str, Any]:
    tasks = template.find_resources("AWS::ECS::TaskDefinition")
    (task,) = [t for t in tasks.values()
               if t["Properties"]["ContainerDefinitions"][0]["Name"] == "MediaNode"]
    return task  # type: ignore[no-any-return]


def _media_service(template: Template) -> dict[str, Any]:
    services = template.find_resources("AWS::ECS::Service")
    (service,) = [s for s in services.values()
                  if "MediaNode" in json.dumps(s["Properties"].get("LoadBalancers", []))]
    return service  # type: ignore[no-any-return]


def _logical_id(template: Template, kind: str, props: dict[str, Any]) -> str:
    found = template.find_resources(kind, {"Properties": props})
    assert len(found) == 1, list(found)
    return next(iter(found))


def test_join_token_keys_are_made_by_a_custom_resource_not_the_template(
    template: Template,
) -> None:
    secrets = template.find_resources("AWS::SecretsManager::Secret")
    private = next(k for k, v in secrets.items() if "signing" in v["Properties"]["Description"])
    public = next(k for k, v in secrets.items()
                  if "verification" in v["Properties"]["Description"])
    for secret in secrets.values():
        assert "SecretString" not in secret["Properties"]
    key_pair = _one(template, "AWS::CloudFormation::CustomResource")
    assert key_pair["Properties"]["PrivateKeySecretArn"] == {"Ref": private}
    assert key_pair["Properties"]["PublicKeySecretArn"] == {"Ref": public}
    # The API reads the private key (tests/infra/test_iam.py); the media task's
    # execution role only the public one.
    task_def = _media_task(template)
    (container,) = task_def["Properties"]["ContainerDefinitions"]
    assert container["Secrets"] == [{"Name": "JOIN_TOKEN_PUBLIC_KEY",
                                     "ValueFrom": {"Ref": public}}]
    execution_role = task_def["Properties"]["ExecutionRoleArn"]["Fn::GetAtt"][0]
    readable = json.dumps(_policies_of(template, execution_role))
    assert public in readable
    assert private not in readable


def test_media_nodes_run_on_fargate_with_public_ips_behind_a_signaling_alb(
    template: Template,
) -> None:
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    subnets = template.find_resources("AWS::EC2::Subnet")
    service = _media_service(template)
    network = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "ENABLED"
    for subnet in network["Subnets"]:
        assert subnets[subnet["Ref"]]["Properties"]["MapPublicIpOnLaunch"] is True
    task_def = _media_task(template)
    (container,) = task_def["Properties"]["ContainerDefinitions"]
    assert container["StopTimeout"] == 120
    assert container["Image"]["Fn::Sub"].startswith("${AWS::AccountId}.dkr.ecr.")
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["ANNOUNCED_ADDRESS"] == "ecs"
    assert "PUBLIC_URL" in env
    template.has_resource_properties("AWS::EC2::SecurityGroup", {
        "SecurityGroupIngress": Match.array_with([Match.object_like({
            "IpProtocol": "udp", "FromPort": 7900, "ToPort": 7900,
            "CidrIp": "0.0.0.0/0"})]),
    })
    assert env["UDP_PORT"] == "7900"
    # The nodes open nothing else to the world (the edge: tests/infra/test_edge.py).
    (group,) = network["SecurityGroups"]
    nodes = template.find_resources("AWS::EC2::SecurityGroup")[group["Fn::GetAtt"][0]]
    world = [(r["IpProtocol"], r["FromPort"], r["ToPort"])
             for r in nodes["Properties"]["SecurityGroupIngress"]
             if r.get("CidrIp") == "0.0.0.0/0"]
    assert world == [("udp", 7900, 7900)]
    template.has_resource_properties("AWS::ElasticLoadBalancingV2::TargetGroup", {
        "HealthCheckPath": "/health", "Port": 8700})
    template.has_resource_properties("AWS::ElasticLoadBalancingV2::ListenerRule", {
        "Conditions": Match.array_with([Match.object_like({
            "Field": "http-header",
            "HttpHeaderConfig": Match.object_like({"HttpHeaderName": "X-Parlor-Origin"})})]),
    })
    template.has_resource_properties("AWS::ElasticLoadBalancingV2::Listener", {
        "DefaultActions": [Match.object_like({"Type": "fixed-response"})]})


def test_a_node_runs_one_worker_per_vcpu_and_nodes_reach_each_other(
    template: Template, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    task_def = _media_task(template)
    (container,) = task_def["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert (task_def["Properties"]["Cpu"], env["WORKERS"], env["CAPACITY"]) == ("1024", "1", "500")
    assert env["PRIVATE_URL"] == "ecs"
    # Forwarded signaling and relay feeds' WebSockets: the signaling port, from the
    # nodes' own security group; the feeds' UDP too, from that group only.
    service = _media_service(template)
    (group,) = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"][
        "SecurityGroups"]
    template.has_resource_properties("AWS::EC2::SecurityGroupIngress", {
        "IpProtocol": "tcp", "FromPort": 8700, "ToPort": 8700,
        "GroupId": group, "SourceSecurityGroupId": group})
    template.has_resource_properties("AWS::EC2::SecurityGroupIngress", {
        "IpProtocol": "udp", "FromPort": 0, "ToPort": 65535,
        "GroupId": group, "SourceSecurityGroupId": group})
    scaling = _one(template, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert scaling["Properties"]["MaxCapacity"] == 4

    # A bigger task: more workers and more participants, the same per vCPU.
    from tests.infra.conftest import _synth

    bigger = _synth(str(tmp_path_factory.mktemp("cdk.out")), {"media_node_vcpus": 2})
    task_def = _media_task(bigger)
    (container,) = task_def["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert (task_def["Properties"]["Cpu"], task_def["Properties"]["Memory"]) == ("2048", "4096")
    assert (env["WORKERS"], env["CAPACITY"]) == ("2", "1000")
    bigger.has_resource_properties("AWS::EC2::SecurityGroup", {
        "SecurityGroupIngress": Match.array_with([Match.object_like({
            "IpProtocol": "udp", "FromPort": 7900, "ToPort": 7901, "CidrIp": "0.0.0.0/0"})]),
    })
    participants = next(
        c for c in (p["Properties"].get("TargetTrackingScalingPolicyConfiguration", {})
                    for p in bigger.find_resources(
                        "AWS::ApplicationAutoScaling::ScalingPolicy").values())
        if "CustomizedMetricSpecification" in c)
    assert participants["TargetValue"] == 600


def test_media_nodes_scale_on_cpu_and_participants(template: Template) -> None:
    policies = template.find_resources("AWS::ApplicationAutoScaling::ScalingPolicy")
    configs = [p["Properties"]["TargetTrackingScalingPolicyConfiguration"]
               for p in policies.values()
               if p["Properties"]["PolicyType"] == "TargetTrackingScaling"]
    predefined = [c["PredefinedMetricSpecification"]["PredefinedMetricType"]
                  for c in configs if "PredefinedMetricSpecification" in c]
    custom = [c["CustomizedMetricSpecification"] for c in configs
              if "CustomizedMetricSpecification" in c]
    assert predefined == ["ECSServiceAverageCPUUtilization"]
    assert [(m["Namespace"], m["MetricName"]) for m in custom] == [
        ("Parlor/Media", "Participants")]


def test_a_node_may_touch_only_its_queues_the_registry_and_the_events_queue(
    template: Template,
) -> None:
    task_def = _media_task(template)
    task_role = task_def["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    statements = _policies_of(template, task_role)
    actions = {a for s in statements for a in
               (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    assert "sqs:CreateQueue" in actions
    assert "dynamodb:PutItem" in actions
    assert not any(a.endswith("*") and a.split(":")[1] == "*" for a in actions)
    container = task_def["Properties"]["ContainerDefinitions"][0]
    assert {"Name": "NODE_ID", "Value": "aws"} in container["Environment"]
    own_queue = {"StringEquals": {"aws:ResourceTag/parlor-node": "${aws:userid}"}}
    for statement in statements:
        names = statement["Action"] if isinstance(statement["Action"], list) \
            else [statement["Action"]]
        if any(a.startswith("sqs:") for a in names) and "parlor-media-node-*" in \
                json.dumps(statement["Resource"]):
            if "sqs:CreateQueue" in names:
                assert statement["Condition"] == {
                    "StringEquals": {"aws:RequestTag/parlor-node": "${aws:userid}"}}
            else:
                assert set(names) == {"sqs:ReceiveMessage", "sqs:DeleteMessage",
                                      "sqs:DeleteQueue"}
                assert statement["Condition"] == own_queue
        if "dynamodb:PutItem" in names:
            assert set(names) == {"dynamodb:PutItem", "dynamodb:DeleteItem"}
            assert statement["Condition"] == {
                "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["${aws:userid}"]}}
    # It reads other nodes' entries (their private URLs) one item at a time, and the
    # Spaces and members it holds (tests/infra/test_commands.py), nothing else.
    (writes,) = [s for s in statements if "dynamodb:PutItem" in json.dumps(s["Action"])]
    reads = [s for s in statements if "dynamodb:GetItem" in json.dumps(s["Action"])]
    (registry,) = [s for s in reads if s["Resource"] == writes["Resource"]]
    assert registry["Action"] == "dynamodb:GetItem"
    assert "Condition" not in registry
    assert len(reads) == 3
    assert not any(a in actions for a in ("dynamodb:Scan", "dynamodb:Query"))
    # Any other SQS statement of the node's is the media-events queue's send grant.
    others = [s for s in statements if "sqs:SendMessage" in json.dumps(s["Action"])]
    assert len(others) == 1
    assert "parlor-media-node" not in json.dumps(others[0]["Resource"])


def test_one_origin_serves_the_client_the_api_and_signaling(template: Template) -> None:
    template.has_resource_properties("AWS::S3::Bucket", {
        "PublicAccessBlockConfiguration": {
            "BlockPublicAcls": True, "BlockPublicPolicy": True,
            "IgnorePublicAcls": True, "RestrictPublicBuckets": True}})
    # One for every private bucket the site serves: the client's, avatars, HLS.
    template.resource_count_is("AWS::CloudFront::OriginAccessControl", 1)
    distribution = _one(template, "AWS::CloudFront::Distribution")
    config = distribution["Properties"]["DistributionConfig"]
    patterns = {b["PathPattern"] for b in config["CacheBehaviors"]}
    # avatars: cdk/browser.py; hls: cdk/hls.py
    assert patterns == {"/api/*", "/media/*", "/avatars/*", "/hls/*.m3u8", "/hls/*"}
    origins = json.dumps(config["Origins"])
    assert "execute-api" in origins
    assert "X-Parlor-Origin" in origins
    # The client's deployment (hls.js has one of its own, under vendor/).
    deployment = _one(template, "Custom::CDKBucketDeployment",
                      {"DestinationBucketKeyPrefix": Match.absent()})
    assert deployment["Properties"]["DistributionPaths"] == ["/*"]


def test_the_api_is_throttled_logged_and_signs_in_through_cognito(template: Template) -> None:
    rest_api = _one(template, "AWS::Serverless::Api")["Properties"]
    (settings,) = rest_api["MethodSettings"]
    assert settings["ThrottlingRateLimit"] > 0
    assert settings["ThrottlingBurstLimit"] >= settings["ThrottlingRateLimit"]
    assert "DestinationArn" in rest_api["AccessLogSetting"]
    template.has_resource_properties("AWS::Cognito::UserPoolClient", {
        "AllowedOAuthFlows": ["code"], "GenerateSecret": False})
    template.resource_count_is("AWS::Cognito::UserPoolDomain", 1)
    functions = template.find_resources("AWS::Serverless::Function")
    retained = {json.dumps(g["Properties"]["LogGroupName"])
                for g in template.find_resources("AWS::Logs::LogGroup").values()
                if "LogGroupName" in g["Properties"]}
    for name in functions:
        assert any(name in group for group in retained), name


def test_operators_get_alarms_and_a_dashboard(template: Template) -> None:
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    metrics = [(a["Properties"].get("Namespace"), a["Properties"].get("MetricName"))
               for a in alarms.values()]
    functions = template.find_resources("AWS::Serverless::Function")
    assert metrics.count(("AWS/Lambda", "Errors")) == len(functions)
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in metrics
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage") in metrics
    assert ("AWS/ECS", "CPUUtilization") in metrics
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"], "every alarm notifies the topic"
    template.resource_count_is("AWS::CloudWatch::Dashboard", 1)


@pytest.fixture(scope="package")
def nag_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """cdk-nag over the stack with every optional part on (push, SES, TURN over TLS,
    alarm e-mail, a rotated origin secret)."""
    outdir = tmp_path_factory.mktemp("nag.out")
    app = cdk.App(outdir=str(outdir), context=FULL_CONTEXT)
    ParlorStack(app, "Parlor", env=cdk.Environment(region="us-east-1"))
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with contextlib.suppress(RuntimeError):  # the report below says what failed
        app.synth()
    report = Path(outdir) / "validation-report.json"
    data: dict[str, Any] = json.loads(report.read_text()) if report.exists() else {}
    data["template"] = json.loads((Path(outdir) / "Parlor.template.json").read_text()) \
        if (Path(outdir) / "Parlor.template.json").exists() else None
    return data


def test_cdk_nag_finds_nothing_unfixed_or_unexplained(nag_report: dict[str, Any]) -> None:
    violations = [v["ruleName"] for p in nag_report.get("pluginReports", [])
                  for v in p.get("violations", [])]
    assert violations == []
    assert nag_report["template"] is not None, "the app did not synthesize"
    acknowledged = [v for p in nag_report.get("pluginReports", [])
                    for v in p.get("suppressedViolations", [])]
    for violation in acknowledged:
        assert violation.get("suppressionReason") or violation.get("reason") or \
            json.dumps(violation).count("reason"), violation


# Warnings that come from CDK's own generated resources, not from Parlor's choices.
CFN_LINT_ACCEPTED = {
    "W3005": "CDK's custom resource providers state a DependsOn that a GetAtt already implies",
    "W3045": "CDK sets AccessControl on the log bucket CloudFront's standard logs need",
}


@pytest.mark.parametrize("which", ["full", "default", "elsewhere", "companion"])
def test_cfn_lint_passes_on_the_synthesized_templates(
    which: str, nag_report: dict[str, Any], template: Template,
    elsewhere: dict[str, Template],
) -> None:
    from cfnlint.api import ManualArgs, lint

    assert nag_report["template"] is not None
    body, region = {
        "full": (nag_report["template"], "us-east-1"),
        "default": (template.to_json(), "us-east-1"),
        "elsewhere": (elsewhere["main"].to_json(), "eu-west-1"),
        "companion": (elsewhere["edge"].to_json(), "us-east-1"),
    }[which]
    matches = lint(json.dumps(body), config=ManualArgs(regions=[region]))
    # Errors and warnings only: informational matches are suggestions.
    unexpected = [f"{m.rule.id} {m.message}" for m in matches
                  if m.rule.id[0] in "EW" and m.rule.id not in CFN_LINT_ACCEPTED]
    assert unexpected == []
