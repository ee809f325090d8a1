"""The media node benchmark: `python -m bench.media` (see docs/performance.md).

One run, on this machine, of the real node (`python -m media_node`, a supervisor and one
worker, pinned to CPU 0) and of Janus's AudioBridge (when installed, pinned the same
way), under load generators on the other CPUs: one speaker publishing tone bursts, in a
process of its own, and many lightweight listeners in another.

1. Every path side by side, in rounds: each round measures the fast path, the stock
   aiortc sender, aiortc's examples' pattern (an encoder per listener) and Janus at the
   same listener count, then the fast path at scale. Per path: CPU microseconds per
   outbound listener packet (total, and above the room's cost with no listeners),
   listeners per core at 50 packets/s, latency speaker packet in to listener packet
   out, offer-to-answer time, memory per listener. A path's figure is its median over
   the rounds; the stock-over-fast ratio is taken within each round, then its median.
2. A saturation run of the fast path on its one core: a join storm of 500 listeners at
   50/s, then more listeners in steps until loss passes 0.5%, the load generator is the
   one that cannot keep up, or the node keeps waiting for its core.
3. The issue's targets, each with the figure it is judged on and whether it was met.

Results: bench/results/media.json and bench/results/media.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import janus
from .harness import (
    CPU_CGROUPS,
    LOAD_CPU_LIMIT,
    PACKETS_PER_SECOND,
    RESULTS,
    Aws,
    CpuQuota,
    LoadGenerator,
    MediaNode,
    Window,
    load_cpus,
    machine,
    measure,
    percentile,
    probes,
)
from .plot import plot

LOSS_LIMIT = 0.005
# A step that lost packets while the node's event loop waited this share of the window
# for its core was starved by other processes, not saturated: it is measured again, and
# if it stays so the run stops as `contention`, not as the node's limit.
STARVED_WAIT_PERCENT = 10.0
STEP_TRIES = 3
STEP_PROBES = 2
# What `--quick` changes: small counts and short windows, to check the harness works;
# its figures say nothing. It writes outside the repo unless --out says otherwise.
QUICK = {
    "listeners": 20,
    "fast_listeners": 100,
    "ratio_listeners": 40,
    "janus_listeners": [20],
    "seconds": 4.0,
    "rounds": 1,
    "storm": 50,
    "step": 50,
    "limit": 150,
    "out": Path(tempfile.gettempdir()) / "parlor-bench-media-quick",
}


def signing_keys() -> tuple[str, str]:
    """A join-token key pair for one run: the private key mints, the node verifies."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


def node_run(
    aws: Aws,
    keys: tuple[str, str],
    fanout: str,
    listeners: int,
    seconds: float,
    logs: Path,
    on_window: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """One room, one speaker, `listeners` listeners, on one of the node's fan-out paths."""
    private_pem, public_pem = keys
    node = MediaNode(aws, public_pem, fanout, logs)
    space = f"sp_bench_{secrets.token_hex(3)}"
    generators: list[LoadGenerator] = []
    try:
        speaker = LoadGenerator(generator_settings(node, space, private_pem, "s"))
        generators.append(speaker)
        load = LoadGenerator(generator_settings(node, space, private_pem, "l"))
        generators.append(load)
        return {"fanout": fanout, **measure(node, speaker, load, listeners, seconds, on_window)}
    finally:
        for generator in generators:
            generator.stop()
        node.stop()


def generator_settings(node: MediaNode, space: str, private_pem: str, name: str) -> dict[str, Any]:
    """A load generator joining the node's Space with join tokens it mints itself."""
    return {
        "url": node.url,
        "space": space,
        "node_id": node.node_id,
        "private_key": private_pem,
        "name": name,
    }


def saturate(
    aws: Aws,
    keys: tuple[str, str],
    storm: int,
    step: int,
    limit: int,
    logs: Path,
    quota: CpuQuota | None = None,
) -> dict[str, Any]:
    """Fast path, one worker on one core (or held to a share of it): a join storm, then
    listeners added in steps until loss (sequence gaps or packets never sent) passes
    0.5%."""
    private_pem, public_pem = keys
    node = MediaNode(aws, public_pem, "fast", logs, quota)
    space = f"sp_bench_{secrets.token_hex(3)}"
    generators: list[LoadGenerator] = []
    steps: list[dict[str, Any]] = []
    stopped_by = "limit"
    try:
        speaker = LoadGenerator(generator_settings(node, space, private_pem, "s"))
        generators.append(speaker)
        load = LoadGenerator(generator_settings(node, space, private_pem, "l"))
        generators.append(load)
        speaker.ask("speaker")
        time.sleep(2)
        rss_empty = node.rss_mb()
        storm_window = Window(node, load, speaker)
        storm_joins = load.ask("join", count=storm, rate=PACKETS_PER_SECOND, probes=probes(storm))
        during_storm = storm_window.close()
        count = storm
        while True:
            result = measure_step(node, load, speaker, quota)
            steps.append(result)
            print(f"  {count} listeners: {json.dumps(result)}", flush=True)
            if result["load_generator_bound"]:
                stopped_by = "load_generator"
                break
            if result["lost"] > LOSS_LIMIT:
                stopped_by = "contention" if result["contended"] else "loss"
                break
            if count >= limit:
                break
            # Two probes a step: latency along the growing fan-out loop, at a cost to
            # the generator that stays small at thousands of listeners.
            load.ask("join", count=step, rate=2 * PACKETS_PER_SECOND, probes=STEP_PROBES)
            count += step
    finally:
        for generator in generators:
            generator.stop()
        node.stop()
    within = [
        s["listeners"]
        for s in steps
        if s["lost"] <= LOSS_LIMIT and not s["load_generator_bound"] and not s["contended"]
    ]
    return {
        "node_cpu_quota": quota.share if quota else None,
        "join_storm": {
            "listeners": storm,
            "rate_per_second": PACKETS_PER_SECOND,
            "joined": storm_joins["joined"],
            "failed": storm_joins["failed"],
            "answer_ms_p50": percentile(storm_joins["answer_ms"], 0.5),
            "join_ms_p50": percentile(storm_joins["join_ms"], 0.5),
            "join_ms_p95": percentile(storm_joins["join_ms"], 0.95),
            # Who had the CPU while it lasted: a storm measured while the node waited
            # for its core measures the machine's other load too.
            **{
                key: during_storm[key]
                for key in (
                    "node_cpu_percent",
                    "node_waiting_for_cpu_percent",
                    "others_on_node_cpu_percent",
                    "load_cpu_percent",
                    "load_kernel_drops",
                    "load_generator_bound",
                )
            },
        },
        "steps": steps,
        "max_listeners_within_loss_limit": max(within) if within else 0,
        # "loss": the node's limit was found (the last step is past it); "load_generator":
        # the generator's was, and the node's is above the last step; "contention": the
        # node lost packets while other processes held its core; "limit": none, up to
        # --limit.
        "stopped_by": stopped_by,
        "loss_limit": LOSS_LIMIT,
        "rss_empty_room_mb": round(rss_empty, 1),
        "rss_mb_per_100_listeners": slope_per_100(
            [(s["listeners"], s["node_rss_mb"]) for s in steps]
        ),
        # Where the node's own CPU, growing as measured over the clean steps, reaches
        # its whole core: the saturation count when the run stops before the node does.
        **cpu_projection([s for s in steps if s["listeners"] in within]),
    }


def cpu_projection(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The node's CPU per 100 listeners over `steps` (least squares), and the listener
    count at which that line reaches 100% of its core."""
    points = [(s["listeners"], s["node_cpu_percent"]) for s in steps]
    slope = slope_per_100(points)
    if not slope or slope <= 0:
        return {"node_cpu_percent_per_100_listeners": slope, "listeners_at_full_core": None}
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    # The line through the means with that slope, solved for 100%.
    at_full = statistics.fmean(xs) + (100 - statistics.fmean(ys)) * 100 / slope
    return {
        "node_cpu_percent_per_100_listeners": slope,
        "listeners_at_full_core": int(round(at_full, -1)),
    }


def measure_step(
    node: MediaNode, load: LoadGenerator, speaker: LoadGenerator, quota: CpuQuota | None = None
) -> dict[str, Any]:
    """A step's steady window; again (the least lossy kept) while the node was starved.

    A node held to a quota waits for the CPU whenever it reaches its share: that is
    its limit, not starvation, so such a node counts as starved only while it used
    under 95% of its share."""
    best: dict[str, Any] | None = None
    for attempt in range(STEP_TRIES):
        time.sleep(3 if attempt == 0 else 1)
        window = Window(node, load, speaker)
        time.sleep(6)
        result = window.close()
        heard = result.pop("latency_ms")
        result["latency_ms_p50"] = percentile(heard, 0.5)
        result["latency_ms_p95"] = percentile(heard, 0.95)
        packets = result["packets"]
        result["us_per_packet"] = (
            round(1e6 * result["node_cpu_seconds"] / packets, 1) if packets else None
        )
        result["lost"] = max(result["loss"] or 0.0, result["shortfall"] or 0.0)
        result["contended"] = (
            result["lost"] > LOSS_LIMIT
            and result["node_waiting_for_cpu_percent"] > STARVED_WAIT_PERCENT
            and (quota is None or result["node_cpu_percent"] < 95 * quota.share)
        )
        if best is None or result["lost"] < best["lost"]:
            best = result
        if not result["contended"]:
            break
    assert best is not None
    best["tries"] = attempt + 1
    return best


def slope_per_100(points: list[tuple[int, float]]) -> float | None:
    """Least-squares growth of y per 100 of x."""
    if len(points) < 2:
        return None
    xs = [float(x) for x, _ in points]
    ys = [y for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    return round(100 * slope, 2)


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 1) if present else None


# Figures summarised as a median over the rounds, each round's value kept beside it.
PER_ROUND = (
    "us_per_packet",
    "us_per_packet_above_empty_room",
    "latency_ms_p50",
    "latency_ms_p95",
)
# Figures summarised as a median over the rounds only.
MEDIANS = (
    "empty_room_node_cpu_percent",
    "node_cpu_percent",
    "node_waiting_for_cpu_percent",
    "others_on_node_cpu_percent",
    "load_cpu_percent",
    "answer_ms_p50",
    "join_ms_p95",
    "empty_room_node_rss_mb",
    "node_rss_mb",
    "rss_mb_per_100_listeners",
)


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per path and listener count: medians over its rounds, and their spread."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["fanout"], run["listeners"]), []).append(run)
    summary = []
    for (fanout, listeners), group in groups.items():
        if "not_measured" in group[0]:
            summary.append(group[0])
            continue
        flat = [
            run | {f"latency_ms_{p}": run["latency_ms"][p] for p in ("p50", "p95")} for run in group
        ]
        total = median([run["us_per_packet"] for run in flat])
        entry: dict[str, Any] = {
            "fanout": fanout,
            "listeners": listeners,
            "rounds": len(group),
            "listeners_per_core": int(1e6 / total / PACKETS_PER_SECOND) if total else None,
        }
        for key in PER_ROUND:
            entry[key] = median([run[key] for run in flat])
            entry[f"{key}_each_round"] = [run[key] for run in flat]
        for key in MEDIANS:
            entry[key] = median([run[key] for run in flat])
        entry |= {
            "latency_samples": sum(run["latency_ms"]["samples"] for run in group),
            "joined_fewest": min(run["joined"] for run in group),
            "worst_loss": max(run["loss"] or 0.0 for run in group),
            "worst_shortfall": max(run["shortfall"] or 0.0 for run in group),
            "load_kernel_drops": sum(run["load_kernel_drops"] for run in group),
            "load_generator_bound": any(run["load_generator_bound"] for run in group),
        }
        summary.append(entry)
    return summary


def stock_over_fast(runs: list[dict[str, Any]], listeners: int) -> dict[str, Any]:
    """How many times the fast path's CPU per packet the stock sender's is, within each
    round, at the same listener count; the median over the rounds.

    `total`: all of the node's CPU over all packets sent. The room's own cost (decode,
    mix, encode, housekeeping) is in both paths alike, and at 100 listeners it is a
    large share of the fast path's packet, so this ratio is the lower one.
    `above_empty_room`: the room's cost, measured in the same node run before anyone
    listened, taken off first: the fan-out's own cost per listener packet, which is
    what the issue's per-packet figures are (packetize, SRTP, send).
    """
    each_round: dict[str, list[float | None]] = {"total": [], "above_empty_room": []}
    for round_ in sorted({run["round"] for run in runs if "round" in run}):
        paths = {
            run["fanout"]: run
            for run in runs
            if run.get("round") == round_ and run["listeners"] == listeners
        }
        fast, stock = paths.get("fast", {}), paths.get("aiortc", {})
        for name, key in (
            ("total", "us_per_packet"),
            ("above_empty_room", "us_per_packet_above_empty_room"),
        ):
            numerator, denominator = stock.get(key), fast.get(key)
            each_round[name].append(
                round(numerator / denominator, 2) if numerator and denominator else None
            )
    return {
        "listeners": listeners,
        **{
            name: {"median": median(values), "each_round": values}
            for name, values in each_round.items()
        },
    }


def load_generator_summary(
    runs: list[dict[str, Any]], saturation: dict[str, Any]
) -> dict[str, Any]:
    """The listeners' generator's own limits over every window of the run."""
    windows = [r for r in runs if "not_measured" not in r] + saturation["steps"]
    windows.append(saturation["join_storm"])
    return {
        "limit_cpu_percent": round(100 * LOAD_CPU_LIMIT),
        "max_cpu_percent": max(w["load_cpu_percent"] for w in windows),
        "kernel_drops": sum(w["load_kernel_drops"] for w in windows),
        "windows": len(windows),
        "windows_bound": sum(1 for w in windows if w["load_generator_bound"]),
    }


def targets(
    summary: list[dict[str, Any]],
    ratio: dict[str, Any],
    ratio_at_scale: dict[str, Any],
    saturation: dict[str, Any],
    listeners: int,
    at_scale: int,
) -> dict[str, dict[str, Any]]:
    """Issue 7's targets, each with the figure it is judged on, as measured."""
    by_path = {(s["fanout"], s["listeners"]): s for s in summary}
    fast, scale = by_path.get(("fast", listeners), {}), by_path.get(("fast", at_scale), {})
    storm = saturation["join_storm"]

    def met(value: float | None, limit: float, at_most: bool) -> bool | None:
        if value is None:
            return None
        return value <= limit if at_most else value >= limit

    latencies = [fast.get("latency_ms_p95"), scale.get("latency_ms_p95")]
    worst = None if None in latencies else max(v for v in latencies if v is not None)
    return {
        "us_per_packet_at_most_15": {
            "figure": f"fast path, {at_scale} listeners, node CPU per packet sent (total), "
            "median of the rounds",
            "value": scale.get("us_per_packet"),
            "each_round": scale.get("us_per_packet_each_round"),
            f"at_{listeners}_listeners": fast.get("us_per_packet"),
            "met": met(scale.get("us_per_packet"), 15, at_most=True),
        },
        # The fan-out's own cost per listener packet, stock over fast, at one count for
        # both: what the issue compares (per listener, packetize + SRTP + send). The
        # totals carry the room's decode, mix and encode, the same in both paths, and
        # are reported beside it: they cannot reach 7x while that cost is a large
        # share of the fast path's packet.
        "7x_better_than_stock_same_run": {
            "figure": f"stock aiortc sender over fast path, node CPU per packet above the "
            f"empty room, {ratio_at_scale['listeners']} listeners each, same round; median "
            "of the rounds' ratios",
            "value": ratio_at_scale["above_empty_room"]["median"],
            "each_round": ratio_at_scale["above_empty_room"]["each_round"],
            f"total_at_{ratio_at_scale['listeners']}_listeners": ratio_at_scale["total"]["median"],
            f"above_empty_room_at_{ratio['listeners']}_listeners": ratio["above_empty_room"][
                "median"
            ],
            f"total_at_{ratio['listeners']}_listeners": ratio["total"]["median"],
            "met": met(ratio_at_scale["above_empty_room"]["median"], 7, at_most=False),
        },
        "latency_p95_at_most_60_ms": {
            "figure": f"fast path, speaker packet in to listener packet out, p95, at "
            f"{listeners} and at {at_scale} listeners, median of the rounds; the higher "
            "is judged",
            "value": worst,
            f"at_{listeners}_listeners": latencies[0],
            f"at_{at_scale}_listeners": latencies[1],
            "met": met(worst, 60, at_most=True),
        },
        "join_storm_p95_at_most_1_s": {
            "figure": f"{storm['listeners']} listeners at {storm['rate_per_second']}/s, "
            "offer to first audio packet, p95 ms, every listener receiving",
            "value": storm["join_ms_p95"],
            "failed": storm["failed"],
            "answer_ms_p50": storm["answer_ms_p50"],
            "met": met(storm["join_ms_p95"], 1000, at_most=True) and storm["failed"] == 0,
        },
        "rss_mb_per_100_listeners": {
            "figure": "node RSS (supervisor and worker) growth over the saturation steps, "
            "least squares; reported, no target",
            "value": saturation["rss_mb_per_100_listeners"],
            "met": None,
        },
    }


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"small counts and one round, to check the harness (results in {QUICK['out']})",
    )
    parser.add_argument("--listeners", type=int, default=100, help="every path, each round")
    parser.add_argument("--fast-listeners", type=int, default=1000, help="fast path at scale")
    parser.add_argument(
        "--ratio-listeners",
        type=int,
        default=400,
        help="stock and fast again at this count, each round: the ratio the 7x target is "
        "judged on (0: skip)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every path")
    parser.add_argument("--storm", type=int, default=500, help="join storm size, at 50/s")
    parser.add_argument("--step", type=int, default=250, help="saturation step")
    parser.add_argument("--limit", type=int, default=4000, help="saturation stops here")
    parser.add_argument(
        "--janus",
        action=argparse.BooleanOptionalAction,
        default=janus.installed(),
        help=f"also measure Janus's AudioBridge (default: on when {janus.JANUS} exists)",
    )
    parser.add_argument(
        "--janus-listeners",
        type=int,
        nargs="+",
        help="Janus's listener counts, each round (default: --listeners)",
    )
    parser.add_argument(
        "--saturation-only",
        type=float,
        metavar="SHARE",
        help="only the saturation run, with the node held to SHARE of its core (cgroup v1 "
        "CPU quota, needs root): the loss point where the machine cannot load a whole "
        "core; results in media-saturation-quota.json",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    if parser.parse_known_args()[0].quick:
        parser.set_defaults(**QUICK)
    args = parser.parse_args()
    args.janus_listeners = args.janus_listeners or [args.listeners]
    if args.saturation_only is not None:
        if not 0 < args.saturation_only <= 1:
            parser.error("--saturation-only takes a share of one core, above 0, at most 1")
        if not CpuQuota.available():
            parser.error(f"{CPU_CGROUPS} is not writable: a CPU quota needs cgroup v1 and root")
    if args.janus and not janus.installed():
        parser.error(f"{janus.JANUS} is missing; `make bench` installs Debian's package")
    return args


def main() -> None:
    args = arguments()
    # This process runs moto, which serves the node's heartbeats and long polls: off
    # the node's core, like the load generators.
    os.sched_setaffinity(0, load_cpus())
    keys = signing_keys()
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / "media-logs"
    logs.mkdir(exist_ok=True)
    # moto's server logs every request of the nodes' heartbeats and long polls.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    started = time.time()
    if args.saturation_only is not None:
        quota_saturation(args, keys, logs, load_at_start, started)
        return
    paths = [
        ("fast", args.listeners),
        ("aiortc", args.listeners),
        ("aiortc-encode", args.listeners),
        *((janus.FANOUT, count) for count in args.janus_listeners if args.janus),
        ("fast", args.fast_listeners),
        # The stock sender at the most listeners it holds on its core with room to spare,
        # and the fast path beside it: the same count for both, where the room's own
        # cost is a small share of either path's packet.
        *(
            (fanout, args.ratio_listeners)
            for fanout in ("aiortc", "fast")
            if args.ratio_listeners and args.ratio_listeners != args.listeners
        ),
    ]
    aws = Aws()
    try:
        runs: list[dict[str, Any]] = []
        # On a shared machine, a path measured while another process ran is slower
        # than one measured just before: every round measures every path, and ratios
        # are taken within a round.
        for round_ in range(args.rounds):
            for fanout, listeners in paths:
                print(f"{fanout}, {listeners} listeners, round {round_ + 1}", flush=True)
                if fanout == janus.FANOUT:
                    run = janus.measure_janus(listeners, args.seconds, logs)
                else:
                    run = node_run(aws, keys, fanout, listeners, args.seconds, logs)
                runs.append(run | {"round": round_})
                print(f"  {json.dumps(runs[-1])}", flush=True)
        if not args.janus:
            why = "--no-janus" if janus.installed() else f"{janus.JANUS} not installed"
            runs.append(janus.not_measured(args.listeners, why))
        print("saturation (fast path)", flush=True)
        saturation = saturate(aws, keys, args.storm, args.step, args.limit, logs)
    finally:
        aws.stop()
    summary = summarize(runs)
    ratio = stock_over_fast(runs, args.listeners)
    ratio_at_scale = stock_over_fast(runs, args.ratio_listeners or args.listeners)
    # What the saturation run checks: the listeners per core the fast path's cost at
    # scale predicts.
    saturation["derived_listeners_per_core"] = next(
        s["listeners_per_core"]
        for s in summary
        if (s["fanout"], s["listeners"]) == ("fast", args.fast_listeners)
    )
    results = {
        **run_header(started, load_at_start),
        "settings": {
            key: getattr(args, key)
            for key in (
                "quick",
                "listeners",
                "fast_listeners",
                "ratio_listeners",
                "janus_listeners",
                "seconds",
                "rounds",
                "storm",
                "step",
                "limit",
            )
        },
        # Each path's median over the rounds; every run is in comparison_runs.
        "comparison": summary,
        "comparison_runs": runs,
        "stock_over_fast_ratio": ratio,
        "stock_over_fast_ratio_at_scale": ratio_at_scale,
        "saturation": saturation,
        "load_generator": load_generator_summary(runs, saturation),
        "targets": targets(
            summary, ratio, ratio_at_scale, saturation, args.listeners, args.fast_listeners
        ),
    }
    (args.out / "media.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "media.png")
    print(json.dumps({"targets": results["targets"]}, indent=2))
    print(f"wrote {args.out / 'media.json'} and {args.out / 'media.png'}")


def run_header(started: float, load_at_start: list[float]) -> dict[str, Any]:
    """What every results file starts with: the command, when, and on what machine."""
    return {
        "command": " ".join(["python -m bench.media", *sys.argv[1:]]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_seconds": round(time.time() - started),
        "machine": machine()
        | {
            "load_average_at_start": load_at_start,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
    }


def quota_saturation(
    args: argparse.Namespace,
    keys: tuple[str, str],
    logs: Path,
    load_at_start: list[float],
    started: float,
) -> None:
    """The saturation run alone, the node held to a share of its core, compared with
    the full run's derived listeners per core (from `media.json`, when there is one)."""
    quota = CpuQuota(args.saturation_only)
    aws = Aws()
    try:
        print(f"saturation (fast path, {quota.share:g} of a core)", flush=True)
        saturation = saturate(aws, keys, args.storm, args.step, args.limit, logs, quota)
    finally:
        aws.stop()
        quota.remove()
    full_run = args.out / "media.json"
    derived = None
    if full_run.exists():
        derived = json.loads(full_run.read_text())["saturation"].get("derived_listeners_per_core")
    measured = saturation["max_listeners_within_loss_limit"]
    results = {
        **run_header(started, load_at_start),
        "node_cpu_quota": quota.share,
        "saturation": saturation,
        # The check: the listeners the held node kept within the loss limit, per whole
        # core, against what the full run's cost per packet predicts for one.
        "check": {
            "max_listeners_within_loss_limit": measured,
            "per_whole_core": int(measured / quota.share) if measured else None,
            "derived_listeners_per_core_full_run": derived,
        },
    }
    path = args.out / "media-saturation-quota.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["check"], indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
