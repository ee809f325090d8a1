"""Rolling out a new node version without dropping Spaces: nodes protect their tasks,
scale-in never follows live participants down, deploys keep the count, two nodes in
two zones, and a stopping node has time to send its clients elsewhere."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from tests.infra.conftest import _synth
from tests.infra.templates import actions, one, statements_of

pytestmark = pytest.mark.slow


def _media_service(template: Template) -> dict[str, Any]:
    services = template.find_resources("AWS::ECS::Service")
    (service,) = [s for s in services.values() if "LoadBalancers" in s["Properties"]
                  and any(lb.get("ContainerName") == "MediaNode"
                          for lb in s["Properties"]["LoadBalancers"])]
    return service  # type: ignore[no-any-return]


def _media_task(template: Template) -> dict[str, Any]:
    tasks = template.find_resources("AWS::ECS::TaskDefinition")
    (task,) = [t for t in tasks.values()
               if t["Properties"]["ContainerDefinitions"][0]["Name"] == "MediaNode"]
    return task  # type: ignore[no-any-return]


def _media_scaling(template: Template) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    target_id, target = next(iter(template.find_resources(
        "AWS::ApplicationAutoScaling::ScalableTarget").items()))
    policies = [p["Properties"] for p in template.find_resources(
        "AWS::ApplicationAutoScaling::ScalingPolicy").values()
        if p["Properties"].get("ScalingTargetId") == {"Ref": target_id}]
    return target, policies


def test_a_node_may_protect_its_task_from_scale_in(template: Template) -> None:
    task = _media_task(template)
    role = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    (statement,) = [s for s in statements_of(template, role)
                    if "ecs:UpdateTaskProtection" in actions(s)]
    cluster = next(iter(template.find_resources("AWS::ECS::Cluster")))
    assert f'{{"Ref": "{cluster}"}}, "/*"' in json.dumps(statement["Resource"])


def test_deploys_leave_the_node_count_to_autoscaling(template: Template) -> None:
    assert "DesiredCount" not in _media_service(template)["Properties"]


def test_at_least_two_nodes_in_two_zones(
    template: Template, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    target, _ = _media_scaling(template)
    assert (target["Properties"]["MinCapacity"], target["Properties"]["MaxCapacity"]) == (2, 4)
    network = _media_service(template)["Properties"]["NetworkConfiguration"][
        "AwsvpcConfiguration"]
    subnets = template.find_resources("AWS::EC2::Subnet")
    zones = {json.dumps(subnets[s["Ref"]]["Properties"]["AvailabilityZone"])
             for s in network["Subnets"]}
    assert len(zones) == 2
    single = _synth(str(tmp_path_factory.mktemp("cdk.out")), {"max_media_nodes": 1})
    target, _ = _media_scaling(single)
    assert (target["Properties"]["MinCapacity"], target["Properties"]["MaxCapacity"]) == (1, 1)


def test_scale_in_waits_for_idle_nodes(template: Template) -> None:
    _, policies = _media_scaling(template)
    tracking = [p["TargetTrackingScalingPolicyConfiguration"] for p in policies
                if p["PolicyType"] == "TargetTrackingScaling"]
    assert len(tracking) == 2
    for config in tracking:
        assert config["DisableScaleIn"] is True
    (step,) = [p["StepScalingPolicyConfiguration"] for p in policies
               if p["PolicyType"] == "StepScaling"]
    assert [s["ScalingAdjustment"] for s in step["StepAdjustments"]] == [-1]
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    (idle,) = [a["Properties"] for a in alarms.values()
               if a["Properties"].get("MetricName") == "Participants"
               and a["Properties"]["ComparisonOperator"] == "LessThanOrEqualToThreshold"]
    assert idle["Threshold"] == 50
    assert idle["EvaluationPeriods"] == 15


def test_a_stopping_node_has_time_to_drain(template: Template) -> None:
    (container,) = _media_task(template)["Properties"]["ContainerDefinitions"]
    assert container["StopTimeout"] == 120
    group = one(template, "AWS::ElasticLoadBalancingV2::TargetGroup",
                {"Port": 8700})["Properties"]
    delay = {a["Key"]: a["Value"] for a in group["TargetGroupAttributes"]}[
        "deregistration_delay.timeout_seconds"]
    assert delay == "120"


def test_node_metrics_carry_the_stack(template: Template) -> None:
    (container,) = _media_task(template)["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["METRICS_STACK"] == "Parlor"
    dimensions = [a["Properties"].get("Dimensions") for a in template.find_resources(
        "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == "Parlor/Media"]
    policies = [p["Properties"]["TargetTrackingScalingPolicyConfiguration"][
        "CustomizedMetricSpecification"]["Dimensions"]
        for p in template.find_resources("AWS::ApplicationAutoScaling::ScalingPolicy").values()
        if "CustomizedMetricSpecification" in json.dumps(p)]
    assert dimensions
    assert policies
    for found in dimensions + policies:
        assert {"Name": "Stack", "Value": "Parlor"} in found, found

