"""Rotates the local join-token keys: `python -m local.rotate` (`make rotate-keys`).

A new key becomes current and the current one is kept as the previous, in .local/ and,
when `make up` is running, in its embedded Secrets Manager, as the stack's custom
resource does in AWS on a new `join_token_key_generation`. The running API signs with
the new key once its cached key is JOIN_TOKEN_KEY_CACHE_SECONDS old; the media node
reads the set again at the first token under the new key."""

from __future__ import annotations

import sys

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.media.jointoken import rotated
from local import settings
from local.keys import load_key_set, publish, save_key_set


def main() -> int:
    previous = load_key_set(settings.JOIN_TOKEN_KEYS, settings.JOIN_TOKEN_KEY)
    keys = rotated(previous[:1])
    # The embedded AWS takes any credentials; `make up` gives its processes these.
    client = boto3.client(
        "secretsmanager", endpoint_url=f"http://{settings.HOST}:{settings.AWS_PORT}",
        region_name="us-east-1", aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106
        config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}))
    try:
        publish(client, keys)
        where = "in .local/ and in the running make up"
    except (BotoCoreError, ClientError):
        where = "in .local/ (make up is not running: it starts with them)"
    # The file last: a rotation the running system never saw is not half-applied.
    save_key_set(settings.JOIN_TOKEN_KEYS, keys)
    print(f"join-token keys rotated {where}: current {keys[0].kid}, "
          f"previous {keys[1].kid if len(keys) > 1 else 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
