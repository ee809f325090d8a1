"""Events shaped exactly as AWS delivers them to Lambda, built from recorded templates."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import time
import uuid
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@cache
def _template(name: str) -> dict[str, Any]:
    return json.loads((HERE / name).read_text())  # type: ignore[no-any-return]


def sqs_event(*bodies: str, source_arn: str | None = None) -> dict[str, Any]:
    records = []
    for body in bodies:
        record = copy.deepcopy(_template("sqs_record.json"))
        if source_arn is not None:
            record["eventSourceARN"] = source_arn
        record["messageId"] = str(uuid.uuid4())
        record["body"] = body
        record["md5OfBody"] = hashlib.md5(body.encode()).hexdigest()  # noqa: S324
        records.append(record)
    return {"Records": records}


_sequence = itertools.count(4_200_000_000_000_000_000_000)

Image = dict[str, Any]


def dynamodb_stream_event(*changes: tuple[Image | None, Image | None],
                          source_arn: str | None = None) -> dict[str, Any]:
    """Stream records as Lambda receives them from a NEW_AND_OLD_IMAGES stream, one per
    (old image, new image) pair of typed items ({"S": ...}); None means no item."""
    records = []
    for old, new in changes:
        record = copy.deepcopy(_template("dynamodb_stream_record.json"))
        image = new if new is not None else old
        assert image is not None
        record["eventName"] = "INSERT" if old is None else "REMOVE" if new is None else "MODIFY"
        record["eventID"] = uuid.uuid4().hex
        change = record["dynamodb"]
        change["ApproximateCreationDateTime"] = int(time.time())
        change["Keys"] = {"space_id": image["space_id"]}
        change["SequenceNumber"] = str(next(_sequence))
        for name, value in (("OldImage", old), ("NewImage", new)):
            if value is None:
                del change[name]
            else:
                change[name] = value
        change["SizeBytes"] = len(json.dumps(change["Keys"])) + len(json.dumps(old or {})) \
            + len(json.dumps(new or {}))
        if source_arn is not None:
            record["eventSourceARN"] = source_arn
        records.append(record)
    return {"Records": records}


def websocket_event(route: str, connection_id: str,
                    query: dict[str, str] | None = None) -> dict[str, Any]:
    """A $connect (with its query string) or $disconnect event of the WebSocket API."""
    name = {"$connect": "websocket_connect.json", "$disconnect": "websocket_disconnect.json"}
    event = copy.deepcopy(_template(name[route]))
    event["requestContext"]["connectionId"] = connection_id
    if query is not None:
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    return event
