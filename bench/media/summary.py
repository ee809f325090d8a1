"""A run's figures: each path's medians over the rounds, the stock-over-fast ratio
taken within each round, and the issue's targets judged on them."""

from __future__ import annotations

import statistics
from typing import Any

from .harness import LOAD_CPU_LIMIT, PACKETS_PER_SECOND


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
