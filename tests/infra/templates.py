"""Small readers of synthesized templates, shared by the infra tests."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Template

FUNCTIONS = {"APIHandler", "HandleMediaEvents", "HandleSpaceChanges", "FanOutAlerts",
             "DeliverAlerts", "WebsocketConnect", "WebsocketDisconnect",
             "ProvisionJoinTokenKeys", "DispatchMemberCommands", "DispatchSpaceCommands",
             "EndAbandonedSpaces", "SettleHls"}


def one(template: Template, kind: str, props: dict[str, Any] | None = None) -> dict[str, Any]:
    found = template.find_resources(kind, {"Properties": props} if props else None)
    assert len(found) == 1, (kind, list(found))
    return next(iter(found.values()))  # type: ignore[no-any-return]


def one_id(template: Template, kind: str) -> str:
    found = template.find_resources(kind)
    assert len(found) == 1, (kind, list(found))
    return next(iter(found))


def policies_of(template: Template, role: str) -> dict[str, dict[str, Any]]:
    """The policies (inline or managed) attached to a role: logical id -> resource."""
    found = {}
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for key, policy in template.find_resources(kind).items():
            if {"Ref": role} in policy["Properties"].get("Roles", []):
                found[key] = policy
    return found


def statements_of(template: Template, role: str) -> list[dict[str, Any]]:
    return [statement for policy in policies_of(template, role).values()
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]]


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def function(template: Template, name: str) -> dict[str, Any]:
    return template.find_resources("AWS::Serverless::Function")[name]  # type: ignore[no-any-return]


def variables(template: Template, name: str) -> dict[str, Any]:
    return function(template, name)["Properties"]["Environment"]["Variables"]  # type: ignore[no-any-return]


def role_of(template: Template, name: str) -> str:
    role = function(template, name)["Properties"]["Role"]
    assert set(role) == {"Fn::GetAtt"}, (name, role)
    return role["Fn::GetAtt"][0]  # type: ignore[no-any-return]


def depends_on(resource: dict[str, Any]) -> set[str]:
    value = resource.get("DependsOn", [])
    return {value} if isinstance(value, str) else set(value)
