"""The synthesized CloudFormation templates, synthesized once per test session (the
Chalice construct packages the app each time: about ten seconds)."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from cdk.stack import ParlorStack

PUSH_CONTEXT = {
    "apns": {"PlatformCredential": "-----BEGIN PRIVATE KEY-----test",
             "PlatformPrincipal": "KEYID12345"},
    "fcm": {"PlatformCredential": "{\"type\": \"service_account\"}"},
}


def _synth(outdir: str, context: dict[str, object] | None = None) -> Template:
    app = cdk.App(outdir=outdir, context=context)
    stack = ParlorStack(app, "Parlor", env=cdk.Environment(region="us-east-1"))
    return Template.from_stack(stack)


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return _synth(str(tmp_path_factory.mktemp("cdk.out")))


@pytest.fixture(scope="session")
def template_with_push(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return _synth(str(tmp_path_factory.mktemp("cdk.out")), {"push": PUSH_CONTEXT})
