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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import janus
from .harness import (
    CPU_CGROUPS,
    RESULTS,
    Aws,
    CpuQuota,
    load_cpus,
    machine,
)
from .plot import plot
from .runs import node_run, signing_keys
from .saturation import saturate
from .summary import load_generator_summary, stock_over_fast, summarize, targets

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
