"""The API fuzzed from docs/openapi.yaml against `make up`: whatever a client generated
from the document sends, the API never answers with a server error, and every answer
is one the document describes (status, content type, body schema, 405 for a method
no route has)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.localrun import ROOT, LocalRun

pytestmark = pytest.mark.slow

CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "unsupported_method",
])


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    run = LocalRun.prepare(tmp_path_factory.mktemp("fuzzed")).start()
    try:
        yield run
    finally:
        run.kill()


def test_no_request_the_document_allows_or_forbids_gets_a_server_error(local: LocalRun) -> None:
    token = local.issuer.mint("u-alice")
    schemathesis = Path(sys.executable).parent / "st"
    done = subprocess.run(
        [str(schemathesis), "run", str(ROOT / "docs" / "openapi.yaml"),
         "--url", local.api, "-H", f"Authorization: Bearer {token}",
         "--checks", CHECKS, "--max-examples", "8", "--seed", "1515",
         "--phases", "examples,coverage,fuzzing,stateful",
         "--no-color"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert "Server error" not in done.stdout, report
    assert done.returncode == 0, report
