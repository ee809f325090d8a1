"""Where a node's HLS objects go: S3, through boto3 on a few threads of the worker, so
that the event loop (and with it the mixer's 20 ms tick) never waits on a request."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

# Each try fails fast; the output's own backoff paces the retries, and a slow S3 never
# holds a thread of the pool for long.
S3_CLIENT_CONFIG = BotoConfig(connect_timeout=2, read_timeout=5,
                              retries={"max_attempts": 1, "mode": "standard"})


class StoreError(Exception):
    """The object could not be written or read now; trying again may work."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    body: bytes
    content_type: str
    cache_control: str
    tagging: str


class Store(Protocol):
    async def put(self, item: StoredObject) -> None: ...

    async def get(self, key: str) -> bytes | None: ...


class S3Store:
    def __init__(self, client: Any, bucket: str, threads: int) -> None:
        self._client = client
        self._bucket = bucket
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="hls-s3")

    async def put(self, item: StoredObject) -> None:
        await self._call(self._client.put_object, Bucket=self._bucket, Key=item.key,
                         Body=item.body, ContentType=item.content_type,
                         CacheControl=item.cache_control, Tagging=item.tagging)

    async def get(self, key: str) -> bytes | None:
        try:
            answer = await self._call(self._client.get_object, Bucket=self._bucket, Key=key)
        except StoreError as exc:
            if isinstance(exc.__cause__, ClientError) and exc.__cause__.response.get(
                    "Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        body = answer["Body"]
        return bytes(await asyncio.get_running_loop().run_in_executor(self._executor, body.read))

    async def _call(self, method: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, lambda: method(**kwargs))
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
