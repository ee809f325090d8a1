"""The container images build the same tomorrow as today: exact base tags and package
versions, and the CPU architecture said on the asset and on the task."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("dockerfile", ["media_node/Dockerfile", "turn/Dockerfile"])
def test_base_images_are_pinned_by_exact_version(dockerfile: str) -> None:
    bases = re.findall(r"^FROM\s+(\S+)", (ROOT / dockerfile).read_text(), re.MULTILINE)
    assert bases
    for base in bases:
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-bookworm", base), base


def test_media_node_requirements_are_exact_versions() -> None:
    lines = [line.split("#")[0].strip()
             for line in (ROOT / "media_node/requirements.txt").read_text().splitlines()]
    requirements = [line for line in lines if line]
    assert len(requirements) >= 7
    for line in requirements:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+(\[[a-z,]+\])?==[0-9][0-9A-Za-z.]*", line), line


def test_images_and_tasks_are_x86_64(template: Template, assets: dict[str, Any]) -> None:
    images = assets["dockerImages"]
    assert len(images) == 2, "the media node and TURN"
    for image in images.values():
        assert image["source"]["platform"] == "linux/amd64"
    for task in template.find_resources("AWS::ECS::TaskDefinition").values():
        assert task["Properties"]["RuntimePlatform"] == {
            "CpuArchitecture": "X86_64", "OperatingSystemFamily": "LINUX"}
