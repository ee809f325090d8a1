"""The synthesized CloudFormation templates, synthesized once per test run (the
Chalice construct packages the app each time: about ten seconds)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from cdk.stack import ParlorStack

PUSH_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:parlor-push-AbCdEf"
# Every optional setting an operator running Parlor for real would give.
FULL_CONTEXT: dict[str, Any] = {
    "push_secret": PUSH_SECRET,
    "alarm_email": "ops@example.com",
    "ses_from_email": "no-reply@example.com",
    "turn_certificate_arn": "arn:aws:acm:us-east-1:123456789012:certificate/abc-123",
    "turn_domain": "turn.example.com",
    "origin_secret_generation": 2,
}


@pytest.fixture(scope="package", autouse=True)
def kept_environment() -> Iterator[None]:
    """Chalice's packager imports the app with the stage's variables put in os.environ
    (USERS_TABLE and the rest, as unresolved CDK tokens) and leaves them there. Every
    process the suite starts later would inherit them: a media node would reconcile
    against tables named by those tokens. The environment is put back after this
    package (whose syntheses are package-scoped, so they run inside it)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _synth(outdir: str, context: dict[str, object] | None = None,
           region: str = "us-east-1") -> Template:
    app = cdk.App(outdir=outdir, context=context)
    stack = ParlorStack(app, "Parlor", env=cdk.Environment(region=region))
    return Template.from_stack(stack)


@pytest.fixture(scope="package")
def template_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cdk.out")


@pytest.fixture(scope="package")
def template(template_dir: Path) -> Template:
    return _synth(str(template_dir))


@pytest.fixture(scope="package")
def assets(template: Template, template_dir: Path) -> dict[str, Any]:
    """The cloud assembly's asset manifest of the default synthesis."""
    return json.loads((template_dir / "Parlor.assets.json").read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="package")
def full_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return _synth(str(tmp_path_factory.mktemp("cdk.out")), FULL_CONTEXT)


@pytest.fixture(scope="package")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Template]:
    """A stack in eu-west-1 and the companion stack it makes in us-east-1."""
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = cdk.App(outdir=str(outdir))
    stack = ParlorStack(app, "Parlor", env=cdk.Environment(region="eu-west-1"))
    edge = app.node.find_child("ParlorEdge")
    assert isinstance(edge, cdk.Stack)
    return {"main": Template.from_stack(stack), "edge": Template.from_stack(edge)}
