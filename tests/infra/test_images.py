"""The container images build the same tomorrow as today: exact base tags and package
versions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("dockerfile", ["media_node/Dockerfile"])
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
