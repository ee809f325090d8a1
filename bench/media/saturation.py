"""The saturation run: the fast path on its one core (or a share of it), a join storm,
then listeners in steps until loss passes its limit."""

from __future__ import annotations

import json
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

from .harness import (
    PACKETS_PER_SECOND,
    Aws,
    CpuQuota,
    LoadGenerator,
    MediaNode,
    Window,
    percentile,
    probes,
)
from .runs import generator_settings

LOSS_LIMIT = 0.005
# A step that lost packets while the node's event loop waited this share of the window
# for its core was starved by other processes, not saturated: it is measured again, and
# if it stays so the run stops as `contention`, not as the node's limit.
STARVED_WAIT_PERCENT = 10.0
STEP_TRIES = 3
STEP_PROBES = 2


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
