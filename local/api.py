"""Serves the Chalice app over HTTP on this machine, as API Gateway would in AWS.

Uses Chalice's own local server, whose requests run in threads with a thread-local
current request, so concurrent requests really are concurrent."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from chalice.config import Config
from chalice.local import LocalDevServer, create_local_server

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"


def server(host: str, port: int) -> LocalDevServer:
    from app import app

    config = Config.create(chalice_stage="dev", app_name="parlor", project_dir=str(FUNCTIONS))
    return create_local_server(app, config, host, port)


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve Parlor's API locally")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s api %(message)s")
    server(args.host, args.port).serve_forever()


if __name__ == "__main__":
    main()
