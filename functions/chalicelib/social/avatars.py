"""Avatars: uploaded by the browser straight to S3 with a presigned POST, then confirmed.

The POST's policy fixes the object key, its exact content type (PNG, JPEG or WebP, never
SVG: it is served from the site's own origin) and a size range, so S3 itself refuses
anything else. Confirming (PUT /me/avatar) checks the object once more (size, type, and
that its first bytes are the image format it claims) before the profile points at it,
and deletes the avatar it replaces. CloudFront serves the bucket's `avatars/` prefix at
the same path (`/avatars/...`), and so does the local origin from the embedded S3."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from functools import cache
from typing import Any
from urllib.parse import quote

import boto3
from botocore.exceptions import ClientError
from pynamodb.exceptions import UpdateError

from ..platform.errors import InvalidField, NotFound, Unavailable
from ..platform.models import User

PREFIX = "avatars/"
MAX_BYTES = 1024 * 1024
UPLOAD_SECONDS = 300
# Content type -> the file extension of the key, and the bytes every such file starts with.
TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
_KEY = re.compile(r"avatars/[A-Za-z0-9_.:@-]{1,128}/[a-f0-9]{16}\.(png|jpg|webp)")
# Long-lived: a new avatar is a new key.
CACHE_CONTROL = "public, max-age=31536000, immutable"


def url_of(key: str | None) -> str | None:
    """Where the client finds the avatar: the site's own origin, /avatars/..."""
    return "/" + quote(key, safe="/") if key else None


def _bucket() -> str:
    name = os.environ.get("AVATARS_BUCKET")
    if not name:
        raise Unavailable("Avatars are not set up in this deployment",
                          code="avatars_unavailable")
    return name


@cache
def _s3() -> Any:
    return boto3.client("s3")


def _looks_like(content_type: str, head: bytes) -> bool:
    if content_type == "image/png":
        return head.startswith(b"\x89PNG\r\n\x1a\n")
    if content_type == "image/jpeg":
        return head.startswith(b"\xff\xd8\xff")
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def upload(user_id: str, content_type: str) -> dict[str, Any]:
    """A presigned POST for one avatar of `user_id`, valid for a few minutes."""
    if content_type not in TYPES:
        raise InvalidField("content_type", "'content_type' is image/png, image/jpeg or image/webp")
    key = f"{PREFIX}{user_id}/{secrets.token_hex(8)}.{TYPES[content_type]}"
    post = _s3().generate_presigned_post(
        Bucket=_bucket(), Key=key,
        Fields={"Content-Type": content_type, "Cache-Control": CACHE_CONTROL},
        Conditions=[{"Content-Type": content_type}, {"Cache-Control": CACHE_CONTROL},
                    ["content-length-range", 1, MAX_BYTES]],
        ExpiresIn=UPLOAD_SECONDS)
    return {"url": post["url"], "fields": post["fields"], "key": key, "max_bytes": MAX_BYTES,
            "expires_at": int(time.time()) + UPLOAD_SECONDS}


def _refuse(key: str, message: str) -> InvalidField:
    with contextlib.suppress(ClientError):
        _s3().delete_object(Bucket=_bucket(), Key=key)
    return InvalidField("key", message)


def confirm(user_id: str, key: str) -> None:
    """Makes the uploaded object at `key` the user's avatar."""
    if not _KEY.fullmatch(key) or not key.startswith(f"{PREFIX}{user_id}/"):
        raise InvalidField("key", "'key' is not one of your uploads")
    bucket = _bucket()
    try:
        head = _s3().head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        raise NotFound("Nothing was uploaded with that key", code="upload_not_found") from exc
    content_type = head.get("ContentType", "")
    if TYPES.get(content_type) != key.rsplit(".", 1)[-1]:
        raise _refuse(key, "The upload is not the image type it was made for")
    if not 0 < int(head["ContentLength"]) <= MAX_BYTES:
        raise _refuse(key, f"An avatar is at most {MAX_BYTES} bytes")
    start = _s3().get_object(Bucket=bucket, Key=key, Range="bytes=0-15")["Body"].read()
    if not _looks_like(content_type, start):
        raise _refuse(key, "The upload is not an image of its type")
    _set(user_id, key)


def remove(user_id: str) -> None:
    _set(user_id, None)


def _set(user_id: str, key: str | None) -> None:
    try:
        previous = User.get(user_id, consistent_read=True).avatar_key
    except User.DoesNotExist as exc:
        raise NotFound("Create your profile first (PUT /me)", code="profile_not_found") from exc
    action = User.avatar_key.set(key) if key else User.avatar_key.remove()
    try:
        User(user_id).update(actions=[action], condition=User.user_id.exists())
    except UpdateError as exc:
        raise NotFound("Create your profile first (PUT /me)", code="profile_not_found") from exc
    if previous and previous != key:
        # The old image goes; a failure here only leaves an unreferenced object.
        with contextlib.suppress(ClientError):
            _s3().delete_object(Bucket=_bucket(), Key=previous)
