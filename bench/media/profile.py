"""Where a listener packet's CPU goes, fast path against stock, in one run:
`python -m bench.media.profile` (results in bench/results/media-profile.json; needs
`perf` and the right to record CPU-wide, as root).

The benchmark's node, room and load generator (`python -m bench.media`'s `node_run`) at
the ratio's listener count, each path in turn for a few rounds; over each steady window
`perf record -C <node CPU> -g` samples the node's core. From the samples of the node's
processes: the share under `sendto` and `sendmmsg` (the kernel's UDP send), and within
it the share spent in the softirq that delivers the datagram to its receiver
(`net_rx_action`). On loopback the kernel delivers a datagram inline, on the sender's
CPU, so the listeners' own receive path (routing, the UDP socket's queue, waking the
load generator) is counted as the node's CPU in every figure of `bench.media`; a node
sending to a network interface does not pay it. The shares times the window's CPU per
packet give microseconds per packet, and the stock-over-fast ratio is taken as judged
(above the empty room) and with that receive half taken off both paths.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .harness import NODE_CPU, RESULTS, Aws, load_cpus, write_results
from .runs import node_run, signing_keys

PERF = shutil.which("perf")
# `perf report --children` rows whose inclusive share is read, by symbol: the kernel's
# send (one datagram per sendto, the stock path and the node's STUN; a batch per
# sendmmsg, the fast path's room), and the loopback receive within it.
SENDS = ("__sys_sendto", "__sys_sendmmsg")
LOOPBACK_RECEIVE = "net_rx_action"


def shares(data: Path) -> dict[str, float]:
    """Inclusive shares of the node's samples (its processes are the `python` ones on
    its CPU): all of them, under the sends, and the loopback receive within those."""

    def report(*options: str) -> str:
        return subprocess.run(
            [str(PERF), "report", "-i", str(data), "--stdio", "-g", "none", *options],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    node = softirq_thread = 0.0
    for line in report("--no-children", "--sort", "comm").splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1] == "python":
            node = float(fields[0].rstrip("%"))
        # When softirqs pile up the kernel hands them to this thread: receive work
        # that then is not counted as the node's.
        if len(fields) == 2 and fields[1] == f"ksoftirqd/{NODE_CPU}":
            softirq_thread = float(fields[0].rstrip("%"))
    found: dict[str, float] = {}
    for line in report("--children", "--comm", "python", "--sort", "sym").splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[-1] in (*SENDS, LOOPBACK_RECEIVE):
            found.setdefault(fields[-1], float(fields[0].rstrip("%")))
    if not node or not any(send in found for send in SENDS):
        raise SystemExit(f"perf found no samples of the node in {data}")
    return {
        "node": node,
        # Neither system call runs inside the other: their shares add up.
        "send": sum(found.get(send, 0.0) for send in SENDS) / node,
        "loopback_receive": found.get(LOOPBACK_RECEIVE, 0.0) / node,
        "softirq_thread": softirq_thread / node,
    }


def profiled_run(
    aws: Aws, pair: tuple[str, str], fanout: str, listeners: int, seconds: float, work: Path
) -> dict[str, Any]:
    data = work / f"{fanout}.data"
    recorder: list[subprocess.Popen[bytes]] = []

    def record(window: float) -> None:
        recorder.append(
            subprocess.Popen(
                [str(PERF), "record", "-q", "-g", "-C", str(NODE_CPU), "-o", str(data),
                 "--", "sleep", str(window)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    run = node_run(aws, pair, fanout, listeners, seconds, work, on_window=record)
    recorder[0].wait()
    share = shares(data)
    data.unlink()
    total = run["us_per_packet"]
    send_us = total * share["send"]
    receive_us = total * share["loopback_receive"]
    return {
        "fanout": fanout,
        "listeners": listeners,
        "us_per_packet": total,
        "us_per_packet_above_empty_room": run["us_per_packet_above_empty_room"],
        "send_us_per_packet": round(send_us, 2),
        "loopback_receive_us_per_packet": round(receive_us, 2),
        "above_empty_room_without_loopback_receive": round(
            run["us_per_packet_above_empty_room"] - receive_us, 2
        ),
        "node_share_of_cpu_percent": share["node"],
        # ksoftirqd's samples on the node's CPU, against the node's own.
        "softirq_thread_over_node": round(share["softirq_thread"], 3),
        "loss": run["loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listeners", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if PERF is None:
        raise SystemExit("perf is not installed (Debian: linux-perf)")
    os.sched_setaffinity(0, load_cpus())
    # moto's server logs every request of the node's heartbeats and long polls.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    started = time.time()
    pair = signing_keys()
    aws = Aws()
    runs: list[dict[str, Any]] = []
    ratios: list[dict[str, float]] = []
    try:
        with tempfile.TemporaryDirectory() as work:
            for number in range(args.rounds):
                paths = ("fast", "aiortc") if number % 2 == 0 else ("aiortc", "fast")
                measured = {}
                for fanout in paths:
                    result = profiled_run(
                        aws, pair, fanout, args.listeners, args.seconds, Path(work)
                    ) | {"round": number}
                    print(json.dumps(result), flush=True)
                    runs.append(result)
                    measured[fanout] = result
                stock, fast = measured["aiortc"], measured["fast"]
                ratios.append(
                    {
                        "above_empty_room": round(
                            stock["us_per_packet_above_empty_room"]
                            / fast["us_per_packet_above_empty_room"],
                            2,
                        ),
                        "without_loopback_receive": round(
                            stock["above_empty_room_without_loopback_receive"]
                            / fast["above_empty_room_without_loopback_receive"],
                            2,
                        ),
                    }
                )
    finally:
        aws.stop()
    overall = {key: round(statistics.median(r[key] for r in ratios), 2) for key in ratios[0]}
    print(json.dumps(overall))
    write_results(args.out, "media-profile.json", "python -m bench.media.profile", started, {
        "listeners": args.listeners,
        "seconds": args.seconds,
        "runs": runs,
        "stock_over_fast_each_round": ratios,
        "stock_over_fast": overall,
    })


if __name__ == "__main__":
    main()
