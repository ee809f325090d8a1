"""The benchmark's figure: cost per packet and latency by path, and the saturation curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

# No display on a build machine: render straight to a file.
matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {"fast": "#2a7", "aiortc": "#c63", "aiortc-encode": "#a33", "janus-audiobridge": "#75a"}


def plot(results: dict[str, Any], path: Path) -> None:
    # A path that was not measured (Janus not installed, or --no-janus) has no bar.
    paths = [r for r in results["comparison"] if "not_measured" not in r]
    figure, (costs, delays, curve) = plt.subplots(
        1, 3, figsize=(16, 4.8), gridspec_kw={"width_ratios": [5, 5, 4]}
    )
    # Path names broken at their first hyphen ("janus-", "audiobridge"), so the labels fit.
    names = [r["fanout"].replace("-", "-\n", 1) for r in paths]
    labels = [f"{name}\n{r['listeners']}" for name, r in zip(names, paths, strict=True)]
    colors = [COLORS.get(r["fanout"], "#777") for r in paths]
    positions = range(len(paths))

    # Bars are the median over the rounds; dots are the rounds themselves.
    values = [r["us_per_packet"] or 0 for r in paths]
    bars = costs.bar(positions, values, color=colors)
    for x, r in zip(positions, paths, strict=True):
        rounds = [v for v in r["us_per_packet_each_round"] if v]
        costs.plot([x] * len(rounds), rounds, "k.", markersize=4)
    for bar, value in zip(bars, values, strict=True):
        costs.text(bar.get_x() + bar.get_width() / 2, value * 1.1, f"{value:g}", ha="center")
    costs.set_yscale("log")
    costs.set_ylabel("node CPU µs per outbound listener packet (log)")
    costs.axhline(15, color="#555", linestyle="--", linewidth=1)
    costs.text(len(paths) - 0.5, 16, "target 15 µs", fontsize=8, color="#555", ha="right")
    costs.set_xticks(list(positions), labels, fontsize=8)
    costs.set_xlabel("path, listeners (median of rounds; dots: each round)")
    costs.set_title("Cost per packet")

    width = 0.38
    for offset, key, shade in (
        (-width / 2, "latency_ms_p50", 0.5),
        (width / 2, "latency_ms_p95", 1),
    ):
        delays.bar(
            [x + offset for x in positions],
            [r[key] or 0 for r in paths],
            width,
            color=colors,
            alpha=shade,
            label=key.rsplit("_", 1)[1],
        )
    delays.axhline(60, color="#555", linestyle="--", linewidth=1)
    delays.text(len(paths) - 0.5, 62, "target p95 60 ms", fontsize=8, color="#555", ha="right")
    delays.set_xticks(list(positions), labels, fontsize=8)
    delays.set_ylabel("ms, speaker packet in to listener packet out")
    delays.set_xlabel("path, listeners (left p50, right p95)")
    delays.set_title("Latency through the server")

    steps = results["saturation"]["steps"]
    listeners = [s["listeners"] for s in steps]
    curve.plot(listeners, [100 * s["lost"] for s in steps], "o-", color="#a33")
    curve.axhline(100 * results["saturation"]["loss_limit"], color="#a33", linestyle="--", lw=1)
    curve.set_xlabel("listeners on one worker (one core)")
    curve.set_ylabel("loss % (incl. packets never sent)", color="#a33")
    cpu = curve.twinx()
    cpu.plot(listeners, [s["node_cpu_percent"] for s in steps], "s-", color="#27a", label="node")
    cpu.plot(listeners, [s["load_cpu_percent"] for s in steps], "^:", color="#777", label="load")
    cpu.set_ylabel("CPU % of one core (node, load generator)", color="#27a")
    cpu.legend(loc="upper left", fontsize=8)
    saturation = results["saturation"]
    curve.set_title(f"Fast path saturation (stopped by {saturation['stopped_by']})")

    machine = results["machine"]
    figure.suptitle(
        f"{results['command']}, {results['started_at']}, {machine['cpu']} ({machine['cpus']} vCPU)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
