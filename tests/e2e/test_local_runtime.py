"""`make up` as a newcomer uses it: the README's walkthrough against the real processes,
then audio from a host to a listener through the media node, then Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local.issuer import LocalIssuer

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Local:
    api: str
    env: dict[str, str]
    issuer: LocalIssuer
    process: subprocess.Popen[str]

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


def _start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "local.up"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_banner(process: subprocess.Popen[str], timeout: float = 90) -> str:
    assert process.stdout is not None
    seen = []
    deadline = time.time() + timeout
    for line in process.stdout:
        seen.append(line)
        if "Ctrl-C stops everything" in line:
            return "".join(seen)
        if time.time() > deadline:
            break
    raise AssertionError("make up never became ready:\n" + "".join(seen[-40:]))


def _stop(process: subprocess.Popen[str]) -> float:
    started = time.time()
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    return time.time() - started


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    state = tmp_path_factory.mktemp("local-state")
    ports = {name: str(_free_port()) for name in ("AWS", "API", "MEDIA")}
    env = {**os.environ, "PARLOR_STATE_DIR": str(state),
           **{f"PARLOR_{name}_PORT": port for name, port in ports.items()}}
    for key in ("AWS_ENDPOINT_URL", "AUTH_JWKS", "AUTH_ISSUER", "JOIN_TOKEN_PRIVATE_KEY"):
        env.pop(key, None)
    process = _start(env)
    try:
        banner = _wait_for_banner(process)
        assert f"http://127.0.0.1:{ports['API']}" in banner
        issuer = LocalIssuer.load_or_create(state / "issuer.pem")
        yield Local(f"http://127.0.0.1:{ports['API']}", env, issuer, process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _peer(local: Local, user: str, space_id: str, seconds: float,
          tone: float = 440) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "local.peer", "--as", user, "--space", space_id,
         "--api", local.api, "--seconds", str(seconds), "--tone", str(tone)],
        cwd=ROOT, env=local.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_the_walkthrough_from_token_to_hearing_the_host(local: Local) -> None:
    status, verdict = local.call("GET", "/me/eligibility", "u-alice")
    assert (status, verdict["eligible"]) == (200, True)
    status, refused = local.call("POST", "/spaces", "u-bob", {"title": "Me too"})
    assert (status, refused["error"]) == (403, "not_eligible")
    status, space = local.call("POST", "/spaces", "u-alice", {"title": "Morning chat"})
    assert status == 201
    space_id = space["space_id"]
    status, joined = local.call("POST", f"/spaces/{space_id}/join", "u-bob")
    assert (status, joined["role"]) == (200, "listener")

    host = _peer(local, "u-alice", space_id, seconds=12, tone=440)
    time.sleep(2)
    listener = _peer(local, "u-bob", space_id, seconds=6)
    heard, _ = listener.communicate(timeout=60)
    host.communicate(timeout=60)
    assert listener.returncode == 0, heard
    assert f"joined {space_id} as listener" in heard, heard
    assert "loudest at 440 Hz" in heard, heard


def test_ctrl_c_stops_everything_and_it_starts_again(local: Local) -> None:
    assert _stop(local.process) < 20
    again = _start(local.env)
    try:
        _wait_for_banner(again)
        status, _ = Local(local.api, local.env, local.issuer, again).call(
            "GET", "/me/eligibility", "u-alice")
        assert status == 200
    finally:
        assert _stop(again) < 20
