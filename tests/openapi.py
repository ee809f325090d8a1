"""docs/openapi.yaml as a test oracle: every response the functional tests receive is
checked against the documented status codes and schemas, so the document cannot drift
from what the API does."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SPEC_PATH = Path(__file__).resolve().parents[1] / "docs" / "openapi.yaml"
# Answered by the framework before any route runs, for every route alike.
FRAMEWORK_STATUSES = {405, 415}
# Answered by the app before any route runs, for every route alike: the document lists
# them once, under this extension, each with a schema that pins its error code.
BEFORE_ROUTES = "x-answered-before-routes"


@cache
def spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text())  # type: ignore[no-any-return]


@cache
def _templates() -> list[tuple[re.Pattern[str], str]]:
    out = []
    for template in spec()["paths"]:
        pattern = re.sub(r"\{[^}]+\}", r"[^/]+", template)
        out.append((re.compile(f"^{pattern}$"), template))
    # Literal segments win over parameters (/spaces/live before /spaces/{space_id}).
    out.sort(key=lambda item: item[1].count("{"))
    return out


def template_for(path: str) -> str | None:
    bare = path.split("?", 1)[0]
    for pattern, template in _templates():
        if pattern.match(bare):
            return template
    return None


def _follow(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec()
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def check_response(method: str, path: str, status: int, body: Any) -> None:
    template = template_for(path)
    assert template is not None, f"{path} is not in docs/openapi.yaml"
    operation = spec()["paths"][template].get(method.lower())
    if operation is None or status in FRAMEWORK_STATUSES:
        return
    # A route's own listing of a status comes first; else the answer before routes.
    responses = {**spec().get(BEFORE_ROUTES, {}), **operation["responses"]}
    assert str(status) in responses, (
        f"{method} {template} answered {status}, which docs/openapi.yaml does not list")
    _validate(_follow(responses[str(status)]), body)


def _validate(response: dict[str, Any], body: Any) -> None:
    pointer_schema = response["content"]["application/json"]["schema"]
    root = dict(spec())
    root["$ref"] = "#/__target"
    root["__target"] = pointer_schema
    jsonschema.Draft202012Validator(root).validate(body)
