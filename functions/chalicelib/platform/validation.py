"""Reading request input: every failure names the field and becomes a 400."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from .errors import BadRequest, InvalidField, UnsupportedMediaType

MAX_BODY_BYTES = 16 * 1024


def require_json_content(content_type: str | None) -> None:
    """A request that has a body says it is JSON (or says nothing, which means JSON)."""
    if content_type is None:
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType(
            f"The body must be JSON (Content-Type: application/json), not {media_type!r}")


def json_object(raw: bytes | None, allowed: set[str]) -> dict[str, Any]:
    """The request body as a JSON object with only `allowed` keys (empty body: {})."""
    if not raw:
        return {}
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"The body is larger than {MAX_BODY_BYTES} bytes",
                         code="body_too_large")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("The body is not valid JSON", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object", code="invalid_json")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidField(unknown[0], f"Unknown field '{unknown[0]}'")
    return body


def string(
    body: Mapping[str, Any],
    name: str,
    *,
    required: bool = True,
    max_len: int = 200,
    min_len: int = 1,
    pattern: re.Pattern[str] | None = None,
    strip: bool = True,
) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidField(name, f"'{name}' is required")
        return None
    if not isinstance(value, str):
        raise InvalidField(name, f"'{name}' must be a string")
    if strip:
        value = value.strip()
    if len(value) < min_len:
        raise InvalidField(name, f"'{name}' must not be empty")
    if len(value) > max_len:
        raise InvalidField(name, f"'{name}' must be at most {max_len} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise InvalidField(name, f"'{name}' has an invalid format")
    return value


def required_string(body: Mapping[str, Any], name: str, **kwargs: Any) -> str:
    value = string(body, name, required=True, **kwargs)
    assert value is not None
    return value


def string_list(
    body: Mapping[str, Any], name: str, *, max_items: int, max_len: int
) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidField(name, f"'{name}' must be a list of strings")
    if len(value) > max_items:
        raise InvalidField(name, f"'{name}' takes at most {max_items} items")
    cleaned: list[str] = []
    for item in value:
        item = item.strip()
        if not item or len(item) > max_len:
            raise InvalidField(name, f"each of '{name}' must be 1 to {max_len} characters")
        if item.lower() not in (c.lower() for c in cleaned):
            cleaned.append(item)
    return cleaned


def number(body: Mapping[str, Any], name: str, *, required: bool = False) -> float | None:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidField(name, f"'{name}' is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidField(name, f"'{name}' must be a number")
    return float(value)


def boolean(body: Mapping[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InvalidField(name, f"'{name}' must be true or false")
    return value


USER_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
SPACE_ID = re.compile(r"sp_[a-z0-9]{20}")
DEVICE_ID = re.compile(r"dev_[a-f0-9]{24}")


def single_values(params: Any) -> dict[str, str]:
    """The query string's parameters, each given once (a repeated one is ambiguous)."""
    if not params:
        return {}
    values = {}
    for name in params:
        given = params.getlist(name)
        if len(given) > 1:
            raise InvalidField(name, f"'{name}' is given more than once")
        values[name] = given[0]
    return values


def path_id(value: str, name: str, pattern: re.Pattern[str]) -> str:
    """Path parameters are checked too, so a malformed id is a 400, never a 500. A path
    may carry an id percent-encoded (`u%40x` for `u@x`); no id has a `%` of its own."""
    value = unquote(value)
    if not pattern.fullmatch(value):
        raise InvalidField(name, f"'{name}' is not a valid id")
    return value
