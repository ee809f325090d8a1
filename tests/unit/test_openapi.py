"""docs/openapi.yaml is a valid OpenAPI document and lists every Chalice route."""

from __future__ import annotations

from openapi_spec_validator import validate

from tests import openapi


def test_the_document_is_valid_openapi() -> None:
    spec = openapi.spec()
    validate(spec)  # raises on any violation of the OpenAPI schema
    assert spec["openapi"].startswith("3.")
    assert spec["paths"], "the document lists no paths"


def test_every_route_is_documented_and_nothing_else() -> None:
    from app import app

    routes = {(method.lower(), path) for path, methods in app.routes.items()
              for method in methods}
    documented = {(method, path) for path, item in openapi.spec()["paths"].items()
                  for method in item if method in {"get", "put", "post", "delete", "patch"}}
    assert routes - documented == set(), "routes missing from docs/openapi.yaml"
    assert documented - routes == set(), "docs/openapi.yaml lists routes the app lacks"


def test_every_documented_error_uses_the_error_shape() -> None:
    for path, item in openapi.spec()["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    schema = openapi._follow(response)["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, method)
