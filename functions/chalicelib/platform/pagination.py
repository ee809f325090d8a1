"""Opaque cursors for paginated lists.

A cursor is DynamoDB's LastEvaluatedKey, base64url-encoded JSON. Decoding checks its
shape and that it belongs to the list being read, so a tampered or foreign cursor is a
400 rather than a DynamoDB validation error."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from .errors import InvalidField

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
MAX_CURSOR_LENGTH = 1024


def limit(query: Mapping[str, str] | None) -> int:
    raw = (query or {}).get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidField("limit", f"'limit' must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def encode(last_evaluated_key: Mapping[str, Any] | None) -> str | None:
    if not last_evaluated_key:
        return None
    raw = json.dumps(last_evaluated_key, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(
    query: Mapping[str, str] | None, key_types: Mapping[str, str], fixed: Mapping[str, str]
) -> dict[str, Any] | None:
    """The cursor from the query string, or None. `key_types` maps each key attribute the
    cursor must hold to its DynamoDB type; `fixed` gives values that must match (the
    partition being listed)."""
    raw = (query or {}).get("cursor")
    if raw is None:
        return None
    bad = InvalidField("cursor", "'cursor' is not a cursor from this list")
    if not raw or len(raw) > MAX_CURSOR_LENGTH:
        raise bad
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise bad from exc
    if not isinstance(data, dict) or set(data) != set(key_types):
        raise bad
    for name, type_code in key_types.items():
        value = data[name]
        if not isinstance(value, dict) or set(value) != {type_code}:
            raise bad
        inner = value[type_code]
        if not isinstance(inner, str) or not inner or len(inner) > 256:
            raise bad
        if type_code == "N":
            try:
                float(inner)
            except ValueError as exc:
                raise bad from exc
    for name, expected in fixed.items():
        if data[name][key_types[name]] != expected:
            raise bad
    return data


def page(items: list[dict[str, Any]], last_key: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"items": items, "next_cursor": encode(last_key)}
