"""A relayed room against the same room on one worker: `python -m bench.media.relay`
(results in bench/results/media-relay.json).

The issue's rooms larger than one worker: when a Space has more listeners than a worker
takes (`WORKER_LISTENERS`), another worker relays it, the owner sending the encoded mix
once to it, which fans it out to its own listeners. Here both ways run on the node's one
core, fast path, one speaker, `listeners` listeners, in the same round:

- *one worker* holds the room and every listener (what `python -m bench.media`
  measures);
- *relayed*: two workers, `WORKER_LISTENERS` half the listeners; the first half joins
  the owner, the second is placed by the node on the other worker, which relays the
  Space. Each half comes from a load generator of its own, so latency and loss are told
  apart for the owner's listeners and the relay's.

Figures: the node's CPU per listener packet (supervisor and every worker, as in
bench.media; above the room with its speaker alone too), each worker's CPU per packet of
its own listeners, and latency (speaker packet in to listener packet out) for each half:
what a relay costs a listener packet and what the hop adds to latency. Which worker took
whom is read from the node's /health, not assumed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from .harness import (
    PACKETS_PER_SECOND,
    RESULTS,
    Aws,
    LoadGenerator,
    MediaNode,
    Window,
    load_cpus,
    percentile,
    probes,
    process_cpu,
    runqueue_wait,
    write_results,
)
from .runs import generator_settings, node_run, signing_keys


def worker_pids(node: MediaNode) -> tuple[int, int]:
    """(owner, relay): the owner is the worker that has the speaker before anyone else
    joins."""
    workers = node.health()["workers"]
    if len(workers) != 2:
        raise SystemExit(f"expected two workers, the node has {len(workers)}")
    owner = next((w for w in workers if w["participants"] > 0), None)
    if owner is None:
        raise SystemExit("no worker took the speaker")
    relay = next(w for w in workers if w is not owner)
    return int(owner["pid"]), int(relay["pid"])


def relayed_run(
    aws: Aws, keys: tuple[str, str], listeners: int, seconds: float, logs: Path
) -> dict[str, Any]:
    private_pem, public_pem = keys
    half = listeners // 2
    node = MediaNode(aws, public_pem, "fast", logs, workers=2, worker_listeners=half)
    space = f"sp_bench_{secrets.token_hex(3)}"
    generators: list[LoadGenerator] = []
    try:
        speaker = LoadGenerator(generator_settings(node, space, private_pem, "s"))
        generators.append(speaker)
        owned = LoadGenerator(generator_settings(node, space, private_pem, "o"))
        generators.append(owned)
        relayed = LoadGenerator(generator_settings(node, space, private_pem, "r"))
        generators.append(relayed)
        speaker.ask("speaker")
        time.sleep(3)
        owner, relay = worker_pids(node)
        idle = Window(node, owned, speaker)
        idle_cpu = {pid: process_cpu(pid) for pid in (owner, relay)}
        time.sleep(5)
        empty = idle.close()
        empty_worker_percent = {
            pid: 100 * (process_cpu(pid) - idle_cpu[pid]) / empty["seconds"]
            for pid in (owner, relay)
        }
        joins = [
            generator.ask("join", count=half, rate=PACKETS_PER_SECOND, probes=probes(half))
            for generator in (owned, relayed)
        ]
        time.sleep(3)
        placed = {w["pid"]: w["participants"] for w in node.health()["workers"]}
        windows = [Window(node, generator, speaker) for generator in (owned, relayed)]
        started = {pid: (process_cpu(pid), runqueue_wait(pid)) for pid in (owner, relay)}
        time.sleep(seconds)
        worker_cpu = {pid: process_cpu(pid) - started[pid][0] for pid in (owner, relay)}
        worker_wait = {pid: runqueue_wait(pid) - started[pid][1] for pid in (owner, relay)}
        mine, theirs = (window.close() for window in windows)
    finally:
        for generator in generators:
            generator.stop()
        node.stop()
    packets = mine["packets"] + theirs["packets"]
    node_cpu = mine["node_cpu_seconds"]
    empty_cpu = empty["node_cpu_percent"] / 100 * mine["seconds"]

    def per_packet(cpu: float, count: int) -> float | None:
        return round(1e6 * cpu / count, 1) if count else None

    def side(window: dict[str, Any], pid: int, joined: dict[str, Any]) -> dict[str, Any]:
        heard = window["latency_ms"]
        return {
            "listeners_placed": placed.get(pid),
            "joined": joined["joined"],
            "failed": joined["failed"],
            "receiving": window["receiving"],
            "packets": window["packets"],
            "loss": window["loss"],
            "shortfall": window["shortfall"],
            "worker_cpu_percent": round(100 * worker_cpu[pid] / window["seconds"], 1),
            "worker_empty_room_cpu_percent": round(empty_worker_percent[pid], 1),
            "worker_us_per_own_packet": per_packet(worker_cpu[pid], window["packets"]),
            "worker_waiting_for_cpu_percent": round(100 * worker_wait[pid] / window["seconds"], 1),
            "latency_ms": {
                "p50": percentile(heard, 0.5),
                "p95": percentile(heard, 0.95),
                "samples": len(heard),
            },
            "join_ms_p95": percentile(joined["join_ms"], 0.95),
            "load_generator_bound": window["load_generator_bound"],
        }

    return {
        "listeners": listeners,
        "us_per_packet": per_packet(node_cpu, packets),
        "us_per_packet_above_empty_room": per_packet(node_cpu - empty_cpu, packets),
        "empty_room_node_cpu_percent": empty["node_cpu_percent"],
        "node_cpu_percent": mine["node_cpu_percent"],
        "others_on_node_cpu_percent": mine["others_on_node_cpu_percent"],
        "owner": side(mine, owner, joins[0]),
        "relay": side(theirs, relay, joins[1]),
    }


def one_worker_run(
    aws: Aws, keys: tuple[str, str], listeners: int, seconds: float, logs: Path
) -> dict[str, Any]:
    run = node_run(aws, keys, "fast", listeners, seconds, logs)
    return {
        "listeners": listeners,
        "us_per_packet": run["us_per_packet"],
        "us_per_packet_above_empty_room": run["us_per_packet_above_empty_room"],
        "empty_room_node_cpu_percent": run["empty_room_node_cpu_percent"],
        "node_cpu_percent": run["node_cpu_percent"],
        "others_on_node_cpu_percent": run["others_on_node_cpu_percent"],
        "loss": run["loss"],
        "latency_ms": run["latency_ms"],
        "load_generator_bound": run["load_generator_bound"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # A room past the default WORKER_LISTENERS (800), as a relayed room is.
    parser.add_argument("--listeners", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    # This process runs moto, which serves the node's heartbeats: off the node's core.
    os.sched_setaffinity(0, load_cpus())
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    started = time.time()
    keys = signing_keys()
    aws = Aws()
    rounds: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as work:
            logs = Path(work)
            for number in range(args.rounds):
                ways = ("one_worker", "relayed") if number % 2 == 0 else ("relayed", "one_worker")
                row: dict[str, Any] = {"round": number}
                for way in ways:
                    run = relayed_run if way == "relayed" else one_worker_run
                    row[way] = run(aws, keys, args.listeners, args.seconds, logs)
                    print(f"round {number} {way}: {json.dumps(row[way])}", flush=True)
                row["relayed_over_one_worker"] = {
                    key: round(row["relayed"][key] / row["one_worker"][key], 2)
                    for key in ("us_per_packet", "us_per_packet_above_empty_room")
                    if row["relayed"][key] and row["one_worker"][key]
                }
                rounds.append(row)
    finally:
        aws.stop()

    def median(*path: str) -> float | None:
        values = []
        for row in rounds:
            value: Any = row
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if value is not None:
                values.append(value)
        return round(statistics.median(values), 2) if values else None

    fields = {
        "listeners": args.listeners,
        "seconds": args.seconds,
        "medians": {
            "one_worker_us_per_packet": median("one_worker", "us_per_packet"),
            "relayed_us_per_packet": median("relayed", "us_per_packet"),
            "relayed_over_one_worker": median("relayed_over_one_worker", "us_per_packet"),
            "relayed_over_one_worker_above_empty_room": median(
                "relayed_over_one_worker", "us_per_packet_above_empty_room"
            ),
            "owner_worker_us_per_own_packet": median(
                "relayed", "owner", "worker_us_per_own_packet"
            ),
            "relay_worker_us_per_own_packet": median(
                "relayed", "relay", "worker_us_per_own_packet"
            ),
            "one_worker_latency_p50_ms": median("one_worker", "latency_ms", "p50"),
            "one_worker_latency_p95_ms": median("one_worker", "latency_ms", "p95"),
            "owner_listeners_latency_p50_ms": median("relayed", "owner", "latency_ms", "p50"),
            "owner_listeners_latency_p95_ms": median("relayed", "owner", "latency_ms", "p95"),
            "relay_listeners_latency_p50_ms": median("relayed", "relay", "latency_ms", "p50"),
            "relay_listeners_latency_p95_ms": median("relayed", "relay", "latency_ms", "p95"),
        },
        "rounds": rounds,
    }
    write_results(args.out, "media-relay.json", "python -m bench.media.relay", started, fields)


if __name__ == "__main__":
    main()
