"""The embedded AWS: moto in server mode on a local port, and the tables created from
the same model definitions the CDK stack reads (chalicelib.platform.models.table_specs).

`make up` runs it as a process of its own (`python -m local.aws`): moto spends much of
its time serializing answers, and in the API's process that time would be taken from
the API under the GIL. Tests that want it beside them run it in a thread."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import boto3
import fasteners
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from chalicelib.platform.models import TableSpec, table_specs

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


# Requests that only read: any number may run together, never beside a write.
_READS = frozenset({
    "GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems", "DescribeTable",
    "ListTables", "DescribeTimeToLive", "DescribeStream", "ListStreams",
    "GetShardIterator", "GetRecords",
})


def atomic_dynamodb(app: WsgiApp) -> WsgiApp:
    """Applies each DynamoDB write alone, as DynamoDB applies each conditional write or
    transaction atomically. moto's in-memory tables are not safe against two threads
    interleaving inside one transaction, and a read beside a transaction could see the
    writes of one that is then rolled back, which DynamoDB never allows; without this a
    concurrency test would measure moto's races instead of the code's. Reads run
    together (a rejoin storm is mostly reads). Other services pass through unserialized:
    an SQS long poll must not stall the tables."""
    # Writer-preferring: a waiting write holds back new reads, so a crowd of reads
    # cannot starve it.
    lock = fasteners.ReaderWriterLock()

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith("DynamoDB"):
            return app(environ, start_response)
        held = lock.read_lock() if target.rpartition(".")[2] in _READS else lock.write_lock()
        with held:
            return list(app(environ, start_response))

    return wrapped


class _Dispatcher(DomainDispatcherApplication):
    """moto's dispatcher, remembering which backend serves a host. moto works it out
    on every request, under a lock every request waits on, by listing its own package
    directory (a stat per service): a fifth of its time serving a GetItem."""

    def __init__(self, create_app: Callable[..., Any]) -> None:
        super().__init__(create_app)
        self._backends: dict[str | None, Any] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        # Called under moto's lock: no other thread fills the table meanwhile.
        if host not in self._backends:
            self._backends[host] = super().get_backend_for_host(host)
        return self._backends[host]


class EmbeddedAws:
    """moto's server in a thread of this process."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        # One log line per AWS call would bury everything else a developer reads.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        app = _Dispatcher(create_backend_app)
        self._server: BaseWSGIServer = make_server(host, port, atomic_dynamodb(app), threaded=True)
        self.host = host
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="embedded-aws")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> EmbeddedAws:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class AwsProcess:
    """The embedded AWS in a process of its own, on a fixed port."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        # A session of its own, like the media nodes: Ctrl-C reaches it through `make
        # up`, which stops it last, after everything that still talks to it.
        self._process = subprocess.Popen(
            [sys.executable, "-m", "local.aws", "--host", host, "--port", str(port)],
            start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self._process.pid

    def start(self, timeout: float = 30) -> AwsProcess:
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"the embedded AWS exited with {self._process.returncode}")
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the embedded AWS never listened on {self.url}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _key_schema(hash_key: tuple[str, str], range_key: tuple[str, str] | None) -> list[Any]:
    schema = [{"AttributeName": hash_key[0], "KeyType": "HASH"}]
    if range_key is not None:
        schema.append({"AttributeName": range_key[0], "KeyType": "RANGE"})
    return schema


def create_table(client: Any, spec: TableSpec) -> None:
    definitions = {spec.hash_key[0]: spec.hash_key[1]}
    if spec.range_key:
        definitions[spec.range_key[0]] = spec.range_key[1]
    indexes = []
    for index in spec.indexes:
        definitions[index.hash_key[0]] = index.hash_key[1]
        if index.range_key:
            definitions[index.range_key[0]] = index.range_key[1]
        indexes.append({
            "IndexName": index.name,
            "KeySchema": _key_schema(index.hash_key, index.range_key),
            "Projection": {"ProjectionType": index.projection},
        })
    kwargs: dict[str, Any] = {
        "TableName": spec.table_name,
        "KeySchema": _key_schema(spec.hash_key, spec.range_key),
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t}
                                 for n, t in definitions.items()],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if indexes:
        kwargs["GlobalSecondaryIndexes"] = indexes
    if spec.stream:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": spec.stream}
    client.create_table(**kwargs)
    if spec.ttl_attribute:
        client.update_time_to_live(
            TableName=spec.table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute})


def create_tables(endpoint_url: str | None = None) -> list[str]:
    """Creates every table the models define (skipping those that exist)."""
    client = boto3.client("dynamodb", endpoint_url=endpoint_url)
    existing = set(client.list_tables()["TableNames"])
    made = []
    for spec in table_specs():
        if spec.table_name not in existing:
            create_table(client, spec)
            made.append(spec.table_name)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the embedded AWS (moto)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    args = parser.parse_args()
    server = EmbeddedAws(args.host, args.port)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server._server.serve_forever()


if __name__ == "__main__":
    main()
