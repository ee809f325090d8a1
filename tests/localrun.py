"""`make up` started by a test: the local runtime as its own process on free ports, with
its own state folder, and a way to call its API as any user."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.issuer import LocalIssuer

ROOT = Path(__file__).resolve().parents[1]
# Variables the test session sets for moto that must not leak into the real runtime.
_TEST_ONLY = ("AWS_ENDPOINT_URL", "AUTH_JWKS", "AUTH_ISSUER", "JOIN_TOKEN_PRIVATE_KEY",
              "ICE_SERVERS", "ORIGIN_SECRET", "ORIGIN_SECRET_ARN", "TURN_URLS",
              "TURN_SECRET_ARN", "JOIN_TOKEN_SECRET_ARN", "WEB_PUSH_VAPID_PRIVATE_KEY",
              "AVATARS_BUCKET")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(count: int) -> int:
    """The first of `count` consecutive free ports (the media nodes' ports), below
    Linux's ephemeral range: a port the kernel hands out may be taken by any outgoing
    connection (the first node's, say) before the next node binds it."""
    low, high = 20000, 32000
    with contextlib.suppress(OSError, ValueError):
        low_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        if low_ephemeral - 1 - count > low:
            high = min(high, low_ephemeral - 1)
    for _ in range(50):
        first = random.randrange(low, high - count)
        sockets = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return first
    raise RuntimeError(f"no {count} consecutive free ports")


@dataclass
class LocalRun:
    env: dict[str, str]
    state: Path
    process: subprocess.Popen[str] | None = None
    banner: str = ""

    @classmethod
    def prepare(cls, state: Path, media_nodes: int = 1) -> LocalRun:
        env = {k: v for k, v in os.environ.items() if k not in _TEST_ONLY}
        env["PARLOR_STATE_DIR"] = str(state)
        for name in ("AWS", "API", "WEB", "TURN"):
            env[f"PARLOR_{name}_PORT"] = str(free_port())
        env["PARLOR_MEDIA_PORT"] = str(free_ports(media_nodes))
        env["PARLOR_MEDIA_NODES"] = str(media_nodes)
        return cls(env, state)

    def port(self, name: str) -> int:
        return int(self.env[f"PARLOR_{name}_PORT"])

    @property
    def api(self) -> str:
        """The API as clients reach it: through the web origin, which signs requests as
        CloudFront does (the API's own port refuses unsigned ones)."""
        return f"{self.web}/api"

    @property
    def api_port_url(self) -> str:
        """The API's own port, which only the web origin's signed requests pass."""
        return f"http://127.0.0.1:{self.port('API')}"

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.port('WEB')}"

    @functools.cached_property
    def issuer(self) -> LocalIssuer:
        # Loaded once: parsing the RSA key takes tens of milliseconds, and a crowd of
        # participants asks for a token each time they join.
        return LocalIssuer.load_or_create(self.state / "issuer.pem")

    def node_health(self, index: int = 0) -> dict[str, Any]:
        """The /health of media node `index`."""
        url = f"http://127.0.0.1:{self.port('MEDIA') + index}/health"
        with urllib.request.urlopen(url, timeout=5) as response:
            health: dict[str, Any] = json.load(response)
        return health

    def node_index(self, node_id: str) -> int:
        """Which of the run's media nodes has this id."""
        for index in range(int(self.env["PARLOR_MEDIA_NODES"])):
            try:
                if self.node_health(index)["node_id"] == node_id:
                    return index
            except OSError:
                continue
        raise LookupError(node_id)

    @property
    def log_path(self) -> Path:
        """Everything `make up` printed, kept for reading after a failure."""
        return self.state / "make-up.log"

    def start(self, timeout: float = 90) -> LocalRun:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "local.up"], cwd=ROOT, env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.process.stdout is not None
        seen: list[str] = []
        deadline = time.time() + timeout
        for line in self.process.stdout:
            seen.append(line)
            if "Ctrl-C stops everything" in line:
                self.banner = "".join(seen)
                self._keep_reading(seen)
                return self
            if time.time() > deadline:
                break
        self.kill()
        raise AssertionError("make up never became ready:\n" + "".join(seen[-40:]))

    def _keep_reading(self, seen: list[str]) -> None:
        """Reads the output for as long as the run lasts: an unread pipe fills up, and
        then every process that logs to it (the media node too) stops at its next line."""
        assert self.process is not None
        assert self.process.stdout is not None
        stdout = self.process.stdout

        def copy() -> None:
            with self.log_path.open("a") as log:
                log.writelines(seen)
                for line in stdout:
                    log.write(line)
                    log.flush()

        threading.Thread(target=copy, daemon=True, name="make-up-output").start()

    def stop(self) -> float:
        """Ctrl-C, as a developer would; returns how long it took to stop."""
        assert self.process is not None
        started = time.time()
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=30)
        return time.time() - started

    def kill(self) -> None:
        """Ctrl-C, and SIGKILL only if that does not stop it: `make up` runs the media
        nodes and coturn in sessions of their own (so that Ctrl-C drains them), so after
        a SIGKILL their groups, which `make up` wrote down, are killed too."""
        if self.process is None or self.process.poll() is not None:
            self._kill_children()
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._kill_children()

    def _kill_children(self) -> None:
        children = self.state / "children.pids"
        if not children.exists():
            return
        for line in children.read_text().split():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(line), signal.SIGKILL)
        children.unlink(missing_ok=True)

    def call(self, method: str, path: str, user: str, body: Any = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.api + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.issuer.mint(user)}",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())
