"""`make up` as a newcomer uses it: the README's walkthrough against the real processes,
then audio from a host to a listener through the media node, then Ctrl-C."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.localrun import ROOT, LocalRun

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    run = LocalRun.prepare(tmp_path_factory.mktemp("local-state")).start()
    try:
        assert run.web in run.banner
        yield run
    finally:
        run.kill()


def _peer(local: LocalRun, user: str, space_id: str, seconds: float,
          tone: float = 440) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "local.peer", "--as", user, "--space", space_id,
         "--api", local.api, "--seconds", str(seconds), "--tone", str(tone)],
        cwd=ROOT, env=local.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_the_walkthrough_from_token_to_hearing_the_host(local: LocalRun) -> None:
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


def test_ctrl_c_stops_everything_and_it_starts_again(local: LocalRun) -> None:
    assert local.stop() < 20
    again = LocalRun(local.env, local.state).start()
    try:
        status, _ = again.call("GET", "/me/eligibility", "u-alice")
        assert status == 200
    finally:
        assert again.stop() < 20
