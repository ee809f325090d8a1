"""The benchmark's figure: cost per packet by fan-out path, and the saturation curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

# No display on a build machine: render straight to a file.
matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot(results: dict[str, Any], path: Path) -> None:
    # A path that was not measured (Janus not installed) has no bar.
    runs = [r for r in results["comparison"] if "not_measured" not in r]
    steps = results["saturation"]["steps"]
    figure, (costs, curve) = plt.subplots(1, 2, figsize=(12, 4.5))

    # Path names broken at their first hyphen ("janus-", "audiobridge"), so six labels fit.
    names = [r["fanout"].replace("-", "-\n", 1) for r in runs]
    labels = [f"{name}\n{r['listeners']}" for name, r in zip(names, runs, strict=True)]
    values = [r["us_per_packet"] or 0 for r in runs]
    colors = {"fast": "#2a7", "aiortc": "#c63", "aiortc-encode": "#a33"}
    bars = costs.bar(labels, values, color=[colors.get(r["fanout"], "#75a") for r in runs])
    costs.set_yscale("log")
    costs.set_ylabel("node CPU µs per outbound listener packet (log)")
    costs.axhline(15, color="#555", linestyle="--", linewidth=1)
    costs.text(-0.4, 16, "target 15 µs", fontsize=8, color="#555")
    for bar, value in zip(bars, values, strict=True):
        costs.text(
            bar.get_x() + bar.get_width() / 2, value * 1.08, f"{value:g}", ha="center", fontsize=9
        )
    costs.set_xlabel("path, listeners")
    costs.tick_params(axis="x", labelsize=8)
    costs.set_title("Fan-out cost per packet")

    listeners = [s["listeners"] for s in steps]
    curve.plot(listeners, [100 * s.get("lost", s["loss"] or 0) for s in steps], "o-", color="#a33")
    curve.axhline(100 * results["saturation"]["loss_limit"], color="#a33", linestyle="--", lw=1)
    curve.set_xlabel("listeners on one worker (one core)")
    curve.set_ylabel("loss % (incl. packets never sent)", color="#a33")
    cpu = curve.twinx()
    cpu.plot(listeners, [s["node_cpu_percent"] for s in steps], "s-", color="#27a")
    cpu.set_ylabel("node CPU % of one core", color="#27a")
    curve.set_title("Fast path saturation")

    machine = results["machine"]
    figure.suptitle(f"{results['command']} on {machine['cpu']} ({machine['cpus']} vCPU)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
