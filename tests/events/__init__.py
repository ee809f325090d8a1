"""Events shaped exactly as AWS delivers them to Lambda, built from recorded templates."""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@cache
def _template(name: str) -> dict[str, Any]:
    return json.loads((HERE / name).read_text())  # type: ignore[no-any-return]


def sqs_event(*bodies: str) -> dict[str, Any]:
    records = []
    for body in bodies:
        record = copy.deepcopy(_template("sqs_record.json"))
        record["messageId"] = str(uuid.uuid4())
        record["body"] = body
        record["md5OfBody"] = hashlib.md5(body.encode()).hexdigest()  # noqa: S324
        records.append(record)
    return {"Records": records}
