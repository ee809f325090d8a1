"""What batching the fast path's sends saves, measured: `python -m bench.media.sends`
(results in bench/results/media-sends.json).

The issue asks for sends batched where the platform allows. Linux batches datagrams
only on one socket (sendmmsg) or, across sockets, through io_uring; this measured
which is worth having, and the node now shares one socket among a worker's peers (an
ICE mux, media_node/transport/udp_mux.py) and sends with sendmmsg. `sends.c`, compiled here with
the compiler the media node's extension already needs, sends one SRTP-sized datagram
to each of `listeners` loopback receivers every 20 ms from the node's CPU, while a
child process drains them on another, in four ways: sendto per listener socket (the
fast path before the mux), connected sockets, one io_uring submission per tick
across the listener sockets, and one sendmmsg per tick on a single shared socket (what
the node's ICE mux allows, and the fast path does). The figure is the sender's CPU
time per datagram; the ways alternate within each round on this shared machine, and
each is compared with sendto in its round, then the median of the rounds is taken.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .harness import NODE_CPU, RESULTS, load_cpus, write_results

SOURCE = Path(__file__).with_name("sends.c")
WAYS = ("sendto", "connected", "io_uring", "sendmmsg")
BASELINE = "sendto"


def build(directory: Path) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SystemExit("no C compiler: `make bench` installs gcc with the media node's")
    program = directory / "sends"
    subprocess.run([compiler, "-O2", "-o", str(program), str(SOURCE)], check=True)
    return program


def measure(program: Path, way: str, listeners: int, ticks: int) -> dict[str, Any]:
    receiver_cpu = min(load_cpus())
    output = subprocess.run(
        [str(program), way, str(listeners), str(ticks), str(NODE_CPU), str(receiver_cpu)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(output)
    if "error" in result:
        raise SystemExit(f"{way}: {result['error']}")
    return result


def run(program: Path, listeners: int, rounds: int, ticks: int) -> dict[str, Any]:
    each_round: list[dict[str, Any]] = []
    unavailable: dict[str, str] = {}
    for number in range(rounds):
        ways = [way for way in WAYS if way not in unavailable]
        # The order turns every round, so no way always follows the same one.
        shift = number % len(ways)
        measured: dict[str, float] = {}
        for way in ways[shift:] + ways[:shift]:
            result = measure(program, way, listeners, ticks)
            if "unavailable" in result:
                unavailable[way] = result["unavailable"]
                continue
            if result["sent"] < result["expected"]:
                raise SystemExit(f"{way}: {result['sent']} of {result['expected']} sent")
            measured[way] = result["us_per_packet"]
        row = {f"{way}_us": round(us, 3) for way, us in measured.items()}
        row |= {
            f"{way}_over_{BASELINE}": round(us / measured[BASELINE], 3)
            for way, us in measured.items()
            if way != BASELINE
        }
        each_round.append(row)
        print(json.dumps(row), flush=True)
    measured_ways = [way for way in WAYS if way not in unavailable]
    return {
        "listeners": listeners,
        "ticks_per_way": ticks,
        "rounds": rounds,
        "datagram_bytes": 108,
        "us_per_packet": {
            way: statistics.median(r[f"{way}_us"] for r in each_round) for way in measured_ways
        },
        f"over_{BASELINE}": {
            way: statistics.median(r[f"{way}_over_{BASELINE}"] for r in each_round)
            for way in measured_ways
            if way != BASELINE
        },
        "unavailable": unavailable,
        "each_round": each_round,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listeners", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--ticks", type=int, default=150)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.time()
    with tempfile.TemporaryDirectory() as directory:
        program = build(Path(directory))
        measured = run(program, args.listeners, args.rounds, args.ticks)
    write_results(args.out, "media-sends.json", "python -m bench.media.sends", started, measured)


if __name__ == "__main__":
    main()
