"""The deployment's edge under `make up`, with its real processes: the host allowlist
that makes a new deployment usable, the origin's signature on API requests, a listener
that reaches the media node only through TURN (coturn, per-join credentials), and a
join-token key rotation that fails no join."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
)
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from local import settings
from media_node.transport import aiortc_seams as seams
from peer.session import MediaSession
from peer.tones import tone_level
from tests.localrun import ROOT, LocalRun
from tests.media.peers import Peer

pytestmark = pytest.mark.slow

# The API reads its rotated key again this soon (60 s in AWS by default).
KEY_CACHE_SECONDS = 2


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    run = LocalRun.prepare(tmp_path_factory.mktemp("edge"))
    run.env["JOIN_TOKEN_KEY_CACHE_SECONDS"] = str(KEY_CACHE_SECONDS)
    run.start()
    try:
        yield run
    finally:
        run.kill()


def _host_peer(local: LocalRun, user: str, space_id: str, seconds: float,
               tone: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "local.peer", "--as", user, "--space", space_id,
         "--api", local.api, "--seconds", str(seconds), "--tone", str(tone)],
        cwd=ROOT, env=local.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_user_without_followers_hosts_once_an_admin_allowlists_them(local: LocalRun) -> None:
    status, verdict = local.call("GET", "/me/eligibility", "u-dave")
    assert (status, verdict["eligible"], verdict["follower_count"]) == (200, False, 0)
    status, refused = local.call("POST", "/spaces", "u-dave", {"title": "Dave's first"})
    assert (status, refused["reason"]) == (403, "not_enough_followers")
    status, _ = local.call("PUT", "/users/u-dave/hosting", "u-bob", {"allowed": True})
    assert status == 403

    admin = local.issuer.mint("u-root", groups=["admin"])
    status, allowed = _request(local.api, "PUT", "/users/u-dave/hosting", admin,
                               {"allowed": True})
    assert (status, allowed["allowed"]) == (200, True)
    status, verdict = local.call("GET", "/me/eligibility", "u-dave")
    assert (status, verdict["eligible"], verdict["reason"]) == (200, True, "allowlisted")
    status, space = local.call("POST", "/spaces", "u-dave", {"title": "Dave's first"})
    assert (status, space["state"]) == (201, "live")
    status, joined = local.call("POST", f"/spaces/{space['space_id']}/join", "u-dave")
    assert (status, joined["role"]) == (200, "host")
    local.call("POST", f"/spaces/{space['space_id']}/end", "u-dave")


def test_a_local_admin_token_is_minted_with_the_group(local: LocalRun) -> None:
    # What `make token USER=u-carol ADMIN=1` runs.
    minted = subprocess.run(
        [sys.executable, "-m", "local.mint", "u-carol", "--admin"], cwd=ROOT, env=local.env,
        capture_output=True, text=True, check=True).stdout.strip()
    claims = jwt.decode(minted, options={"verify_signature": False})
    assert (claims["sub"], claims["cognito:groups"], claims["token_use"]) == \
        ("u-carol", ["admin"], "access")
    status, allowed = _request(local.api, "PUT", "/users/u-carol/hosting", minted,
                               {"allowed": False})
    assert (status, allowed["allowed"]) == (200, False)


def test_the_api_port_refuses_what_the_web_origin_did_not_sign(local: LocalRun) -> None:
    token = local.issuer.mint("u-alice")
    status, refused = _request(local.api_port_url, "GET", "/me/eligibility", token)
    assert (status, refused["error"]) == (403, "origin_required")
    # A client cannot sign for itself: the web origin replaces whatever it sent.
    status, _ = _request(local.api_port_url, "GET", "/me/eligibility", token,
                         headers={settings.ORIGIN_HEADER: "guessed"})
    assert status == 403
    status, verdict = _request(local.api, "GET", "/me/eligibility", token,
                               headers={settings.ORIGIN_HEADER: "guessed"})
    assert (status, verdict["eligible"]) == (200, True)
    # The origin's secret is kept in the state folder, readable by its owner only.
    assert (local.state / "origin-secret").stat().st_mode & 0o077 == 0


@pytest.mark.skipif(shutil.which("turnserver") is None,
                    reason="coturn is not installed (make test installs it)")
def test_a_listener_reaching_the_node_only_through_turn_hears_the_space(
    local: LocalRun,
) -> None:
    status, space = local.call("POST", "/spaces", "u-alice", {"title": "Through TURN"})
    assert status == 201
    space_id = space["space_id"]
    host = _host_peer(local, "u-alice", space_id, seconds=25, tone=440)
    try:
        time.sleep(2)
        status, joined = local.call("POST", f"/spaces/{space_id}/join", "u-bob")
        assert status == 200, joined
        (turn,) = [s for s in joined["media"]["ice_servers"]
                   if any(u.startswith("turn:") for u in _urls(s))]
        expiry, _, user = turn["username"].partition(":")
        assert user == "u-bob"
        assert time.time() < int(expiry) <= time.time() + 3600 + 5
        result = asyncio.run(_listen_through_relay(joined, space_id))
    finally:
        host.kill()
        host.communicate(timeout=30)
        local.call("POST", f"/spaces/{space_id}/end", "u-alice")
    assert result["offered"] == {"relay"}, result
    assert result["nominated"] == "relay", result
    assert result["level"] > 0.02, result
    # A wrong credential gets no relay: the TURN server checks them.
    forged = dict(turn, credential="bm90IHRoZSBobWFj")
    assert asyncio.run(_relay_candidates(forged)) == 0


def test_joins_keep_working_across_a_key_rotation(local: LocalRun) -> None:
    status, space = local.call("POST", "/spaces", "u-alice", {"title": "Rotating"})
    assert status == 201
    space_id = space["space_id"]
    status, before = local.call("POST", f"/spaces/{space_id}/join", "u-carol")
    assert status == 200
    status, kept_back = local.call("POST", f"/spaces/{space_id}/join", "u-bob")
    assert status == 200
    old_kid = jwt.get_unverified_header(before["token"])["kid"]

    # What `make rotate-keys` runs.
    rotated = subprocess.run([sys.executable, "-m", "local.rotate"], cwd=ROOT, env=local.env,
                             capture_output=True, text=True, check=True).stdout
    assert "in the running make up" in rotated, rotated
    assert f"previous {old_kid}" in rotated, rotated
    new_kid = rotated.split("current ")[1].split(",")[0]
    assert new_kid != old_kid

    async def scenario() -> list[tuple[str, str]]:
        # The token minted just before the rotation, used just after.
        await _connect(before, space_id)
        seen = []
        deadline = time.monotonic() + KEY_CACHE_SECONDS + 20
        while time.monotonic() < deadline:
            status, joined = await asyncio.to_thread(
                local.call, "POST", f"/spaces/{space_id}/join", "u-dave")
            assert status == 200, joined
            kid = jwt.get_unverified_header(joined["token"])["kid"]
            seen.append((kid, await _connect(joined, space_id)))
            if kid == new_kid:
                break
            await asyncio.sleep(0.5)
        # The node has read the new set by now; the key before it still admits.
        seen.append(("before the rotation", await _connect(kept_back, space_id)))
        return seen

    seen = asyncio.run(scenario())
    assert seen[-2][0] == new_kid, seen
    assert {kid for kid, _ in seen[:-1]} <= {old_kid, new_kid}
    assert all(outcome == "admitted" for _, outcome in seen), seen
    # The state folder keeps the set for the next `make up`: new key first, then the old.
    kept = json.loads((local.state / "join-token-keys.json").read_text())
    assert [k["kid"] for k in kept["keys"]] == [new_kid, old_kid]
    local.call("POST", f"/spaces/{space_id}/end", "u-alice")


async def _connect(joined: dict[str, Any], space_id: str) -> str:
    """POSTs an offer with the join's token; "admitted" on 201, else what the node said."""
    peer = Peer(joined["media"]["url"].split("/media/")[0], space_id)
    try:
        await peer.join(joined["token"])
    except AssertionError as refused:
        return str(refused)
    finally:
        await peer.close()
    return "admitted"


def _urls(server: dict[str, Any]) -> list[str]:
    urls = server["urls"]
    return [urls] if isinstance(urls, str) else list(urls)


def _relay_only(server: dict[str, Any]) -> RTCPeerConnection:
    # UDP to the TURN server only: the relay-only client a UDP-hostile network leaves.
    udp = [u for u in _urls(server) if u.endswith("transport=udp")]
    return RTCPeerConnection(RTCConfiguration(
        iceServers=[RTCIceServer(urls=udp, username=server["username"],
                                 credential=server["credential"])],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY))


async def _relay_candidates(server: dict[str, Any]) -> int:
    pc = _relay_only(server)
    pc.addTransceiver("audio", direction="recvonly")
    try:
        await pc.setLocalDescription(await pc.createOffer())
        return sum(" typ relay" in line for line in pc.localDescription.sdp.splitlines())
    finally:
        await pc.close()


async def _listen_through_relay(joined: dict[str, Any], space_id: str) -> dict[str, Any]:
    (turn,) = [s for s in joined["media"]["ice_servers"] if "username" in s]
    # UDP to the TURN server only: the relay-only client a UDP-hostile network leaves.
    udp = {**turn, "urls": [u for u in _urls(turn) if u.endswith("transport=udp")]}
    session = MediaSession([udp], relay_only=True)
    try:
        await session.open(joined["media"]["url"], joined["token"])
        offered = {line.split(" typ ")[1].split(" ")[0]
                   for line in session.pc.localDescription.sdp.splitlines()
                   if line.startswith("a=candidate:")}
        deadline = time.monotonic() + 20
        while session.frames < 100 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        samples = session.heard_since(0.0)
        connection = seams.ice_connection(session.pc.getTransceivers()[0].receiver.transport)
        pair = seams.nominated_pair(connection)
        return {
            "offered": offered,
            "nominated": pair.local_candidate.type if pair else None,
            "level": tone_level(samples[-4800:], 440) if samples.size >= 4800 else 0.0,
        }
    finally:
        await session.close(leave=False)


def _request(base: str, method: str, path: str, token: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        base + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                 **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
