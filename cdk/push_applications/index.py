"""The custom resource behind an SNS platform application (cdk/alerts.py).

CloudFormation has no resource type for a platform application, and its credentials
must stay out of templates: the resource names a Secrets Manager secret and a key in
its JSON, and this function reads the credentials from there while it runs. It logs
nothing of them and returns only the application's ARN."""

from __future__ import annotations

import json
from typing import Any

import boto3


def _attributes(properties: dict[str, Any]) -> dict[str, str]:
    secret = boto3.client("secretsmanager").get_secret_value(
        SecretId=properties["SecretArn"])["SecretString"]
    credentials = json.loads(secret).get(properties["Key"])
    if not isinstance(credentials, dict) or not credentials:
        raise ValueError(f"the push secret has no attributes under {properties['Key']!r}")
    return {str(name): str(value) for name, value in credentials.items()}


def on_event(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    sns = boto3.client("sns")
    properties = event["ResourceProperties"]
    request = event["RequestType"]
    if request == "Delete":
        arn = event["PhysicalResourceId"]
        if arn.startswith("arn:"):
            sns.delete_platform_application(PlatformApplicationArn=arn)
        return {"PhysicalResourceId": arn}
    old = event.get("OldResourceProperties") or {}
    same_application = request == "Update" and all(
        old.get(name) == properties[name] for name in ("Name", "Platform"))
    if same_application:
        arn = event["PhysicalResourceId"]
        sns.set_platform_application_attributes(PlatformApplicationArn=arn,
                                                Attributes=_attributes(properties))
    else:
        # A new name or platform is a new application; CloudFormation then deletes
        # the old one with a Delete for its id.
        arn = sns.create_platform_application(
            Name=properties["Name"], Platform=properties["Platform"],
            Attributes=_attributes(properties))["PlatformApplicationArn"]
    return {"PhysicalResourceId": arn, "Data": {"Arn": arn}}
