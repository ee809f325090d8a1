"""The site's origin signs what it forwards: in AWS, CloudFront adds a per-stack secret
header to every request it sends to API Gateway (and a regional WAF checks it before
the Lambda runs); locally, the web origin (local/web.py) does the same. The app checks
it too, so that a request sent straight to API Gateway's own URL, or to the local API
port, is refused even where the WAF is missing or misconfigured.

Off unless a secret is configured (ORIGIN_SECRET_ARN in AWS, ORIGIN_SECRET locally), as
in the tests that call the app directly."""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Mapping

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..platform.config import settings
from ..platform.errors import Forbidden, Unavailable

# The secret is read again this often, so a rotation reaches warm Lambdas...
CACHE_SECONDS = 300.0
# ...and sooner when a request shows a value the cached one does not match (the edge
# may already send the new one), but never more than once this often.
MISMATCH_REREAD_SECONDS = 10.0

_lock = threading.Lock()
# Secret ARN -> (value, monotonic time read).
_cached: dict[str, tuple[str, float]] = {}


def _read_secret(arn: str) -> str:
    client = boto3.client("secretsmanager", config=Config(
        connect_timeout=2, read_timeout=3, retries={"max_attempts": 2}))
    try:
        value = client.get_secret_value(SecretId=arn)["SecretString"]
    except (BotoCoreError, ClientError) as exc:
        raise Unavailable("The service cannot check where requests come from now",
                          code="origin_check_unavailable") from exc
    # CDK's generated secrets are JSON objects; a plain string is taken as is.
    if value.lstrip().startswith("{"):
        value = json.loads(value).get("secret", "")
    if not value:
        raise Unavailable("The origin secret is empty", code="origin_check_unavailable")
    return str(value)


def _secret(arn: str, *, after_mismatch: bool) -> str:
    with _lock:
        now = time.monotonic()
        cached = _cached.get(arn)
        if cached is not None:
            value, read_at = cached
            age = now - read_at
            if age < CACHE_SECONDS and not (after_mismatch and age >= MISMATCH_REREAD_SECONDS):
                return value
        value = _read_secret(arn)
        _cached[arn] = (value, now)
        return value


def forget() -> None:
    """Drop the cached secrets (tests, and a process that knows they rotated)."""
    with _lock:
        _cached.clear()


def require_signed(headers: Mapping[str, str]) -> None:
    """Refuses a request that lacks the origin's secret header, when one is configured."""
    conf = settings()
    if conf.origin_secret is None and conf.origin_secret_arn is None:
        return
    presented = headers.get(conf.origin_header_name)
    if presented:
        if conf.origin_secret is not None:
            if hmac.compare_digest(presented.encode(), conf.origin_secret.encode()):
                return
        else:
            assert conf.origin_secret_arn is not None
            # While CloudFront takes up a rotated secret it may still send the previous.
            arns = [conf.origin_secret_arn, *filter(None, [conf.origin_previous_secret_arn])]
            for after_mismatch in (False, True):
                for arn in arns:
                    expected = _secret(arn, after_mismatch=after_mismatch)
                    if hmac.compare_digest(presented.encode(), expected.encode()):
                        return
    raise Forbidden("Requests reach this API through the site's address only",
                    code="origin_required")
