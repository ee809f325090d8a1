"""The node's pure parts, without a network: voice activity, parsing, placement on
workers, session ids."""

from __future__ import annotations

import os
import socket
import time

import pytest

from media_node.audio.mixer import Speech, VoiceActivity
from media_node.commands import CommandError, parse
from media_node.config import DEFAULT_WORKER_LISTENERS, Config, ConfigError
from media_node.sessions import SessionAddress, address_of, new_session_id
from media_node.supervisor.front import listener_target
from media_node.supervisor.main import STABLE_SECONDS, RestartBackoff
from media_node.supervisor.workers import RoomView, WorkerProcess


def test_voice_activity_has_hysteresis() -> None:
    vad = VoiceActivity(start_dbfs=-40, stop_dbfs=-50, start_frames=3, stop_frames=4)
    assert [vad.update(-20) for _ in range(3)] == [None, None, Speech.STARTED]
    # Between the thresholds, and brief dips: still speaking.
    assert [vad.update(level) for level in (-45, -60, -60, -30)] == [None] * 4
    assert [vad.update(-60) for _ in range(4)] == [None, None, None, Speech.STOPPED]
    assert vad.update(-30) is None
    assert vad.reset() is None


@pytest.mark.parametrize(
    "body",
    [
        "nope",
        "[]",
        '{"v": 1, "type": "end", "space_id": "s"}',
        '{"v": 2, "type": "explode", "space_id": "s"}',
        '{"v": 2, "type": "mute", "space_id": "s", "user_id": "u"}',
        '{"v": 2, "type": "member", "space_id": "s", "user_id": "u", "role": "speaker"}',
        '{"v": 2, "type": "member", "space_id": "s", "user_id": "u", "role": "admin",'
        ' "muted": false, "version": 1}',
        '{"v": 2, "type": "member", "space_id": "s", "user_id": "u", "role": "speaker",'
        ' "muted": false, "version": "1"}',
        '{"v": 2, "type": "member", "space_id": "s", "role": "speaker", "muted": false,'
        ' "version": 1}',
    ],
)
def test_malformed_commands_are_refused(body: str) -> None:
    with pytest.raises(CommandError):
        parse(body)


def test_config_needs_a_key_and_valid_numbers() -> None:
    with pytest.raises(ConfigError):
        Config.from_env({})
    with pytest.raises(ConfigError):
        Config.from_env({"JOIN_TOKEN_PUBLIC_KEY": "k", "CAPACITY": "lots"})
    with pytest.raises(ConfigError):
        Config.from_env({"JOIN_TOKEN_PUBLIC_KEY": "k", "ANNOUNCED_ADDRESS": "example.com"})
    config = Config.from_env({"JOIN_TOKEN_PUBLIC_KEY": "k", "PORT": "9000"})
    assert config.node_id.startswith("node-")
    assert config.public_url == "http://127.0.0.1:9000"
    assert config.command_queue_name == f"parlor-media-node-{config.node_id}"


def test_config_of_workers_relays_and_the_private_url() -> None:
    config = Config.from_env({"JOIN_TOKEN_PUBLIC_KEY": "k", "PORT": "9000"})
    assert config.workers == len(os.sched_getaffinity(0))
    assert config.worker_listeners == DEFAULT_WORKER_LISTENERS
    assert config.private_url == "http://127.0.0.1:9000"
    config = Config.from_env({"JOIN_TOKEN_PUBLIC_KEY": "k", "WORKERS": "3",
                              "WORKER_LISTENERS": "2", "PRIVATE_URL": "http://10.0.1.7:8700/"})
    assert (config.workers, config.worker_listeners) == (3, 2)
    assert config.private_url == "http://10.0.1.7:8700"
    for bad in ({"WORKERS": "0"}, {"WORKER_LISTENERS": "many"}, {"PRIVATE_URL": "10.0.1.7"}):
        with pytest.raises(ConfigError):
            Config.from_env({"JOIN_TOKEN_PUBLIC_KEY": "k", **bad})


def test_config_of_the_workers_udp_ports() -> None:
    assert Config.from_env({"JOIN_TOKEN_PUBLIC_KEY": "k"}).udp_port == 0
    config = Config.from_env({"JOIN_TOKEN_PUBLIC_KEY": "k", "UDP_PORT": "7900", "WORKERS": "4"})
    assert config.udp_port == 7900
    # Every worker's port must be a port: 65533-65536 is not.
    for bad in ({"UDP_PORT": "65533"}, {"UDP_PORT": "80"}, {"UDP_PORT": "-1"},
                {"UDP_PORT": "udp"}):
        with pytest.raises(ConfigError, match="UDP_PORT"):
            Config.from_env({"JOIN_TOKEN_PUBLIC_KEY": "k", "WORKERS": "4", **bad})


@pytest.mark.parametrize("node_id", ["node-3f9c1a", "AROAEXAMPLE:9f2c4e0b8d7a4c1e9b6f3a2d1c0e5f4a"])
def test_a_session_id_says_which_node_and_worker_hold_it(node_id: str) -> None:
    session_id = new_session_id(node_id, 3)
    assert address_of(session_id) == SessionAddress(node_id, 3)
    assert new_session_id(node_id, 3) != session_id
    for bad in ("", "plain", "a.b", "bm9kZQ.x.abc", "%%%.1.abc", "a.1.b.c"):
        assert address_of(bad) is None, bad


def _worker(index: int, rooms: dict[str, RoomView]) -> WorkerProcess:
    worker = WorkerProcess(index, "secret", socket.socket(), ready=True, rooms=rooms)
    worker.listening.close()
    return worker


def test_listeners_fill_the_owner_then_one_relay_at_a_time() -> None:
    space = "sp_x"
    owner = _worker(0, {space: RoomView(listeners=1, participants=2, relay=False, origin=None)})
    busy = _worker(1, {"sp_other": RoomView(listeners=5, participants=5, relay=False, origin=None)})
    idle = _worker(2, {})
    workers = [owner, busy, idle]
    assert listener_target(space, workers, limit=2) == (owner, False)
    # A join in flight counts: the owner's share is taken.
    reservation = owner.reserve(space, listener=True, relay=False, origin=None, admission=1)
    assert listener_target(space, workers, limit=2) == (idle, True)
    relay_join = idle.reserve(space, listener=True, relay=True, origin=None, admission=2)
    idle.settle(relay_join, admitted=True)
    # The relay that has the Space fills before another opens.
    assert listener_target(space, workers, limit=2) == (idle, True)
    idle.reserve(space, listener=True, relay=True, origin=None, admission=3)
    assert listener_target(space, workers, limit=2) == (busy, True)
    busy.rooms[space] = RoomView(listeners=2, participants=2, relay=True, origin=None)
    assert listener_target(space, workers, limit=2) is None
    # A refused join gives its seat back.
    owner.settle(reservation, admitted=False)
    assert listener_target(space, workers, limit=2) == (owner, False)
    # A worker that is not ready takes nobody.
    owner.ready = False
    assert listener_target(space, workers, limit=2) is None


def test_a_status_asked_after_a_join_was_answered_replaces_its_reservation() -> None:
    worker = _worker(0, {})
    joined = worker.reserve("sp_x", listener=True, relay=False, origin=None, admission=4)
    worker.settle(joined, admitted=True)
    assert joined.done_at is not None
    in_flight = worker.reserve("sp_x", listener=True, relay=False, origin=None, admission=5)
    assert worker.view("sp_x") == RoomView(2, 2, relay=False, origin=None)
    status = {
        "rooms": {"sp_x": {"listeners": 1, "participants": 1, "relay": False, "origin": None}},
        "counters": {"packets_in": 5, "packets_out": 7, "late_ticks": 0},
        "cpu_seconds": 1.5,
        "draining": False,
    }
    # Asked before the join was answered: the join may not be in it, so it still counts.
    worker.absorb(status, asked_at=joined.done_at - 1)
    assert worker.view("sp_x") == RoomView(3, 3, relay=False, origin=None)
    worker.absorb(status, asked_at=joined.done_at + 1)
    assert worker.view("sp_x") == RoomView(2, 2, relay=False, origin=None)
    assert worker.reservations == [in_flight]
    # What a worker counted survives its death.
    worker.died()
    assert worker.view("sp_x") is None
    assert worker.totals().packets_out == 7
    assert worker.cpu_seconds() == 1.5


def test_a_join_admitted_while_a_status_was_on_its_way_counts_once() -> None:
    """The worker admits a join, then answers a status asked before the join's answer
    reached the supervisor: the status holds the join, so its reservation goes."""
    worker = _worker(1, {})
    other = _worker(0, {"sp_x": RoomView(2, 3, relay=False, origin=None)})
    first = worker.reserve("sp_x", listener=True, relay=True, origin=None, admission=7)
    asked_at = time.monotonic()
    status = {
        "rooms": {"sp_x": {"listeners": 1, "participants": 1, "relay": True, "origin": None,
                           "admissions": [7]}},
        "counters": {"packets_in": 0, "packets_out": 0, "late_ticks": 0},
        "cpu_seconds": 0.1,
        "draining": False,
    }
    worker.settle(first, admitted=True)
    worker.absorb(status, asked_at=asked_at)
    assert worker.view("sp_x") == RoomView(1, 1, relay=True, origin=None)
    # So the relay's second seat is free: counted twice, the Space would read as full.
    assert listener_target("sp_x", [other, worker], limit=2) == (worker, True)


def test_a_dead_worker_starts_again_at_once_and_a_crash_loop_backs_off() -> None:
    backoff = RestartBackoff()
    # Its listeners notice within two seconds: the first restart must not wait.
    assert backoff.delay(ran_seconds=30) == 0
    # Dying again soon after each start: longer and longer waits, up to a ceiling.
    waits = [backoff.delay(ran_seconds=1) for _ in range(7)]
    assert waits == sorted(waits)
    assert waits[0] > 0
    assert waits[-1] == waits[-2] >= 30
    # A worker that ran a while before dying is not in a loop: at once again.
    assert backoff.delay(ran_seconds=STABLE_SECONDS + 1) == 0
