"""The closed edge: WAF on CloudFront and on the REST API, a generated secret header
that only CloudFront sends, a regional API, and signaling through a VPC origin."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from cdk.stack import ParlorStack
from tests.infra.templates import one, role_of, statements_of, variables

pytestmark = pytest.mark.slow


def _dynamic_reference(secret: str) -> dict[str, Any]:
    return {"Fn::Join": ["", ["{{resolve:secretsmanager:", {"Ref": secret},
                              ":SecretString:::}}"]]}


def _origin_secrets(template: Template) -> list[str]:
    """Logical ids of the origin header's secrets, by generation."""
    secrets = template.find_resources("AWS::SecretsManager::Secret")
    found = sorted((v["Properties"]["Description"], k) for k, v in secrets.items()
                   if "header CloudFront adds" in v["Properties"]["Description"])
    for _, key in found:
        generated = secrets[key]["Properties"]["GenerateSecretString"]
        assert generated["PasswordLength"] >= 32
        assert "SecretString" not in secrets[key]["Properties"]
    return [key for _, key in found]


def _web_acl(template: Template, scope: str) -> tuple[str, dict[str, Any]]:
    found = template.find_resources("AWS::WAFv2::WebACL", {"Properties": {"Scope": scope}})
    assert len(found) == 1, list(found)
    return next(iter(found.items()))


def _rate_rules(web_acl: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["Statement"]["RateBasedStatement"] for r in web_acl["Properties"]["Rules"]
            if "RateBasedStatement" in r["Statement"]]


def test_cloudfront_has_a_web_acl_with_common_rules_and_per_client_limits(
    template: Template,
) -> None:
    key, web_acl = _web_acl(template, "CLOUDFRONT")
    config = one(template, "AWS::CloudFront::Distribution")["Properties"]["DistributionConfig"]
    assert config["WebACLId"] == {"Fn::GetAtt": [key, "Arn"]}
    groups = [r["Statement"]["ManagedRuleGroupStatement"]
              for r in web_acl["Properties"]["Rules"]
              if "ManagedRuleGroupStatement" in r["Statement"]]
    assert [(g["VendorName"], g["Name"]) for g in groups] == [
        ("AWS", "AWSManagedRulesCommonRuleSet")]
    rates = _rate_rules(web_acl)
    assert [r["AggregateKeyType"] for r in rates] == ["IP", "IP"]
    api = next(r for r in rates if "ScopeDownStatement" in r)
    assert api["ScopeDownStatement"]["ByteMatchStatement"]["SearchString"] == "/api/"
    assert api["Limit"] < next(r for r in rates if "ScopeDownStatement" not in r)["Limit"]
    for rule in web_acl["Properties"]["Rules"]:
        if "RateBasedStatement" in rule["Statement"]:
            assert rule["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 429


def test_the_rest_api_is_regional_and_refuses_requests_without_the_header(
    template: Template,
) -> None:
    rest_api = one(template, "AWS::Serverless::Api")["Properties"]
    assert rest_api["EndpointConfiguration"] == "REGIONAL"
    key, web_acl = _web_acl(template, "REGIONAL")
    association = one(template, "AWS::WAFv2::WebACLAssociation")["Properties"]
    assert association["WebACLArn"] == {"Fn::GetAtt": [key, "Arn"]}
    # SAM's `RestAPI.Stage` names the stage its transform makes (and waits for it).
    assert association["ResourceArn"] == {"Fn::Sub": (
        "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${RestAPI}/stages/"
        "${RestAPI.Stage}")}
    (current,) = _origin_secrets(template)
    (first, *_) = web_acl["Properties"]["Rules"]
    assert first["Priority"] == 0
    assert first["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 403
    match = first["Statement"]["NotStatement"]["Statement"]["ByteMatchStatement"]
    assert match["FieldToMatch"] == {"SingleHeader": {"Name": "x-parlor-origin"}}
    assert (match["PositionalConstraint"], match["SearchString"]) == (
        "EXACTLY", _dynamic_reference(current))
    (rate,) = _rate_rules(web_acl)
    assert rate["AggregateKeyType"] == "FORWARDED_IP"


def test_cloudfront_sends_a_generated_secret_that_no_template_holds(
    template: Template,
) -> None:
    (current,) = _origin_secrets(template)
    config = one(template, "AWS::CloudFront::Distribution")["Properties"]["DistributionConfig"]
    signed = [o for o in config["Origins"] if "OriginCustomHeaders" in o]
    assert len(signed) == 2, "the API and signaling"
    for origin in signed:
        assert origin["OriginCustomHeaders"] == [{
            "HeaderName": "X-Parlor-Origin", "HeaderValue": _dynamic_reference(current)}]
    assert "AWS::StackId" not in json.dumps(config)
    rule = one(template, "AWS::ElasticLoadBalancingV2::ListenerRule")["Properties"]
    header = next(c for c in rule["Conditions"] if c["Field"] == "http-header")
    assert header["HttpHeaderConfig"] == {"HttpHeaderName": "X-Parlor-Origin",
                                          "Values": [_dynamic_reference(current)]}
    # The app checks the same header itself (defence in depth, and the local runtime).
    env = variables(template, "APIHandler")
    assert env["ORIGIN_HEADER_NAME"] == "X-Parlor-Origin"
    assert env["ORIGIN_SECRET_ARN"] == {"Ref": current}
    assert "ORIGIN_PREVIOUS_SECRET_ARN" not in env
    reads = statements_of(template, role_of(template, "APIHandler"))
    assert any(s["Resource"] == {"Ref": current} and "secretsmanager:GetSecretValue"
               in s["Action"] for s in reads)


def test_a_rotated_origin_secret_keeps_the_previous_one_valid(full_template: Template) -> None:
    previous, current = _origin_secrets(full_template)  # generation 1, then 2
    config = one(full_template, "AWS::CloudFront::Distribution")["Properties"][
        "DistributionConfig"]
    assert json.dumps(_dynamic_reference(previous)) not in json.dumps(config)
    assert json.dumps(_dynamic_reference(current)) in json.dumps(config)
    _, web_acl = _web_acl(full_template, "REGIONAL")
    signed = web_acl["Properties"]["Rules"][0]["Statement"]["NotStatement"]["Statement"]
    assert [s["ByteMatchStatement"]["SearchString"] for s in signed["OrStatement"][
        "Statements"]] == [_dynamic_reference(current), _dynamic_reference(previous)]
    rule = one(full_template, "AWS::ElasticLoadBalancingV2::ListenerRule")["Properties"]
    header = next(c for c in rule["Conditions"] if c["Field"] == "http-header")
    assert header["HttpHeaderConfig"]["Values"] == [
        _dynamic_reference(current), _dynamic_reference(previous)]
    env = variables(full_template, "APIHandler")
    assert (env["ORIGIN_SECRET_ARN"], env["ORIGIN_PREVIOUS_SECRET_ARN"]) == (
        {"Ref": current}, {"Ref": previous})


def test_signaling_reaches_an_internal_load_balancer_through_a_vpc_origin(
    template: Template,
) -> None:
    balancers = template.find_resources("AWS::ElasticLoadBalancingV2::LoadBalancer",
                                        {"Properties": {"Type": "application"}})
    ((alb_id, alb),) = balancers.items()
    assert alb["Properties"]["Scheme"] == "internal"
    subnets = template.find_resources("AWS::EC2::Subnet")
    for subnet in alb["Properties"]["Subnets"]:
        assert subnets[subnet["Ref"]]["Properties"]["MapPublicIpOnLaunch"] is False
    routes = template.find_resources("AWS::EC2::Route")
    associations = template.find_resources("AWS::EC2::SubnetRouteTableAssociation")
    alb_tables = {json.dumps(a["Properties"]["RouteTableId"]) for a in associations.values()
                  if a["Properties"]["SubnetId"] in alb["Properties"]["Subnets"]}
    assert not any(json.dumps(r["Properties"]["RouteTableId"]) in alb_tables
                   for r in routes.values()), "no route out of the load balancer's subnets"
    vpc_origin = one(template, "AWS::CloudFront::VpcOrigin")["Properties"][
        "VpcOriginEndpointConfig"]
    assert vpc_origin["Arn"] == {"Ref": alb_id}
    assert vpc_origin["OriginProtocolPolicy"] == "http-only"
    config = one(template, "AWS::CloudFront::Distribution")["Properties"]["DistributionConfig"]
    assert sum("VpcOriginConfig" in o for o in config["Origins"]) == 1
    api = next(o for o in config["Origins"] if "execute-api" in json.dumps(o))
    assert api["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    # Nothing open to the world over TCP; the load balancer takes port 80 from the VPC.
    for group in template.find_resources("AWS::EC2::SecurityGroup").values():
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            if rule.get("CidrIp") == "0.0.0.0/0":
                assert rule["IpProtocol"] == "udp", rule
    (alb_group,) = alb["Properties"]["SecurityGroups"]
    group = template.find_resources("AWS::EC2::SecurityGroup")[alb_group["Fn::GetAtt"][0]]
    (ingress,) = group["Properties"]["SecurityGroupIngress"]
    assert (ingress["FromPort"], ingress["ToPort"]) == (80, 80)
    assert "CidrBlock" in json.dumps(ingress["CidrIp"])


def test_a_stack_outside_us_east_1_gets_cloudfronts_web_acl_from_a_companion(
    elsewhere: dict[str, Template],
) -> None:
    main, edge = elsewhere["main"], elsewhere["edge"]
    _web_acl(edge, "CLOUDFRONT")
    assert main.find_resources("AWS::WAFv2::WebACL", {"Properties": {"Scope": "CLOUDFRONT"}}) \
        == {}
    _web_acl(main, "REGIONAL")
    config = one(main, "AWS::CloudFront::Distribution")["Properties"]["DistributionConfig"]
    reader = config["WebACLId"]["Fn::GetAtt"][0]
    assert main.to_json()["Resources"][reader]["Type"] == "Custom::CrossRegionExportReader"


def test_the_stack_refuses_to_synthesize_without_a_region() -> None:
    app = cdk.App()
    with pytest.raises(ValueError, match="needs to know its region"):
        ParlorStack(app, "Parlor")
