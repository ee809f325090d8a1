"""Table names are the environment's from the moment the app starts (functions/app.py
calls models.use_tables), and never read behind its back when a module is imported."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalicelib.platform.models import Space, table_specs, use_tables

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def restored() -> Iterator[None]:
    yield
    use_tables(os.environ)


def test_the_environment_names_the_tables(restored: None) -> None:
    use_tables({"SPACES_TABLE": "stack-a-spaces"})
    assert Space.Meta.table_name == "stack-a-spaces"
    spec = next(s for s in table_specs() if s.logical_name == "Space")
    assert (spec.env_var, spec.table_name) == ("SPACES_TABLE", "stack-a-spaces")
    use_tables({})
    assert Space.Meta.table_name == "parlor-spaces"


def test_importing_the_models_reads_no_environment() -> None:
    probe = ("from chalicelib.platform.models import Space\n"
             "print(Space.Meta.table_name)\n"
             "import app\n"
             "print(Space.Meta.table_name)\n")
    env = {**os.environ, "SPACES_TABLE": "stack-b-spaces",
           "PYTHONPATH": os.pathsep.join([str(REPO / "functions"), str(REPO)])}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                          text=True, timeout=60, check=True, cwd=REPO / "functions")
    assert done.stdout.split() == ["parlor-spaces", "stack-b-spaces"]
