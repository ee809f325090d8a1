"""Serves the Chalice app over HTTP on this machine, as API Gateway would in AWS.

Uses Chalice's own local server, whose requests run in threads with a thread-local
current request, so concurrent requests really are concurrent."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from chalice import Chalice
from chalice.config import Config
from chalice.local import (
    ChaliceRequestHandler,
    CustomLocalChalice,
    LocalChalice,
    LocalDevServer,
    RouteMatcher,
)

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"


class RequestHandler(ChaliceRequestHandler):
    """Chalice's handler, answering any method no route has (TRACE, QUERY, ...) with a
    JSON 405 and the route's `Allow`, as it does for a route's missing method, rather
    than http.server's 501."""

    # Chalice writes a response's headers and its body apart: with Nagle's algorithm the
    # body waits for the proxy's delayed ACK of the headers, 40 ms on Linux.
    disable_nagle_algorithm = True

    def __init__(self, request: Any, client_address: Any, server: Any, app_object: Chalice,
                 config: Config) -> None:
        # Set before the base class handles the request (it does so in __init__).
        self._routes = app_object.routes
        super().__init__(request, client_address, server, app_object, config)

    def _refuse_method(self) -> None:
        self._parse_payload()  # the body, if any, must not be read as the next request
        try:
            route = RouteMatcher(list(self._routes)).match_route(self.path).route
            allowed = ", ".join(sorted(self._routes[route]))
        except ValueError:
            allowed = ""
        body = json.dumps({"error": "method_not_allowed",
                           "message": f"Unsupported method: {self.command}"}).encode()
        self.send_response(405)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if allowed:
            self.send_header("Allow", allowed)
        self.end_headers()
        self.wfile.write(body)

    def __getattr__(self, name: str) -> Any:
        # http.server looks up do_<METHOD> for every method a client names.
        if name.startswith("do_"):
            return self._refuse_method
        raise AttributeError(name)


def server(host: str, port: int) -> LocalDevServer:
    from app import app

    config = Config.create(chalice_stage="dev", app_name="parlor", project_dir=str(FUNCTIONS))
    # As chalice.local.create_local_server does: the app's current request becomes a
    # thread-local, for the server answers requests in threads.
    if not isinstance(app, LocalChalice):
        CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
        app.__class__ = CustomLocalChalice
    return LocalDevServer(app, config, host, port, handler_cls=RequestHandler)


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve Parlor's API locally")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s api %(message)s")
    server(args.host, args.port).serve_forever()


if __name__ == "__main__":
    main()
