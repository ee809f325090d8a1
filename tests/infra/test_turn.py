"""TURN: coturn on Fargate behind a Network Load Balancer, its shared secret made at
deploy time, TLS only with a certificate, and the API told where it is."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from tests.infra.templates import one, role_of, statements_of, variables

pytestmark = pytest.mark.slow


def _turn_secret(template: Template) -> str:
    secrets = template.find_resources("AWS::SecretsManager::Secret")
    (key,) = [k for k, v in secrets.items() if "static-auth-secret" in
              v["Properties"]["Description"]]
    assert "GenerateSecretString" in secrets[key]["Properties"]
    assert "SecretString" not in secrets[key]["Properties"]
    return key


def _listeners(template: Template) -> dict[int, dict[str, Any]]:
    return {found["Properties"]["Port"]: found["Properties"] for found in template.find_resources(
        "AWS::ElasticLoadBalancingV2::Listener").values()
        if found["Properties"]["Protocol"] in ("UDP", "TLS", "TCP")}


def _urls(template: Template) -> list[str]:
    """TURN_URLS as the API reads it, with the load balancer's name filled in."""
    (balancer,) = template.find_resources("AWS::ElasticLoadBalancingV2::LoadBalancer",
                                          {"Properties": {"Type": "network"}})
    parts = variables(template, "APIHandler")["TURN_URLS"]["Fn::Join"][1]
    name = {"Fn::GetAtt": [balancer, "DNSName"]}
    text = "".join("nlb.example" if part == name else part for part in parts)
    return json.loads(text)  # type: ignore[no-any-return]


def test_coturn_runs_as_its_own_service_with_a_generated_secret(template: Template) -> None:
    secret = _turn_secret(template)
    tasks = template.find_resources("AWS::ECS::TaskDefinition")
    (task,) = [t for t in tasks.values()
               if t["Properties"]["ContainerDefinitions"][0]["Name"] == "Coturn"]
    (container,) = task["Properties"]["ContainerDefinitions"]
    assert container["Secrets"] == [{"Name": "TURN_SECRET", "ValueFrom": {"Ref": secret}}]
    assert not any("secret" in e["Name"].lower() for e in container.get("Environment", []))
    template.has_resource_properties("AWS::EC2::SecurityGroup", {
        "GroupDescription": "Parlor TURN: clients on 3478, peers on the relay ports"})
    groups = [g for g in template.find_resources("AWS::EC2::SecurityGroup").values()
              if "TURN" in g["Properties"]["GroupDescription"]]
    (group,) = groups
    world = {(r["IpProtocol"], r["FromPort"], r["ToPort"])
             for r in group["Properties"]["SecurityGroupIngress"]
             if r.get("CidrIp") == "0.0.0.0/0"}
    assert world == {("udp", 3478, 3478), ("udp", 49152, 49999)}


def test_turn_over_udp_always_and_tls_with_a_certificate(
    template: Template, full_template: Template,
) -> None:
    listeners = _listeners(template)
    assert {port: found["Protocol"] for port, found in listeners.items()} == {3478: "UDP"}
    assert _urls(template) == ["turn:nlb.example:3478?transport=udp"]
    listeners = _listeners(full_template)
    assert {port: found["Protocol"] for port, found in listeners.items()} == {
        3478: "UDP", 443: "TLS"}
    assert listeners[443]["Certificates"] == [
        {"CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc-123"}]
    assert _urls(full_template) == ["turn:nlb.example:3478?transport=udp",
                                    "turns:turn.example.com:443?transport=tcp"]


def test_the_api_mints_turn_credentials_from_the_secret(template: Template) -> None:
    secret = _turn_secret(template)
    env = variables(template, "APIHandler")
    assert env["TURN_SECRET_ARN"] == {"Ref": secret}
    assert "TURN_URLS" in env
    reads = statements_of(template, role_of(template, "APIHandler"))
    assert any(s["Resource"] == {"Ref": secret} and "secretsmanager:GetSecretValue"
               in s["Action"] for s in reads)
    balancer = one(template, "AWS::ElasticLoadBalancingV2::LoadBalancer",
                   {"Type": "network"})["Properties"]
    assert balancer["Scheme"] == "internet-facing"
