"""`make bench`: crash to audio. A Space of one host and LISTENERS listeners under `make
up` (real processes), each a reconnecting participant (peer/participant.py). A fault is
injected with SIGKILL, and for each listener the time from the kill to the first audio
frame of its new connection is taken:

- worker: one node of two workers; the worker holding the Space is killed. Listeners
  notice within two seconds and join again; the node's other worker takes the Space.
- node: two nodes of one worker; the node holding the Space is killed (supervisor and
  worker). Joins go on to the dead node until its heartbeat is stale (6 s), then the
  Space moves to the other node.

Also the rejoin storm's cost: the API's join calls (how many, how long each took) and
the CPU the node that takes the Space spends during the storm against the same span
before the fault. Results: bench/results/recovery.json (goals: p95 <= 5 s for a worker,
<= 15 s for a node)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.media.harness import write_results
from peer.participant import Participant
from tests.localrun import LocalRun

ROOT = Path(__file__).resolve().parent.parent
GOALS = {"worker": 5.0, "node": 15.0}
SETTLE_SECONDS = 10.0
RECOVERY_TIMEOUT_SECONDS = 60.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU seconds of the given processes so far (/proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def node_pids(run: LocalRun, index: int) -> list[int]:
    health = run.node_health(index)
    return [int(health["pid"]), *(int(w["pid"]) for w in health["workers"])]


async def one_fault(fault: str, listeners: int) -> dict[str, Any]:
    nodes, workers = (1, 2) if fault == "worker" else (2, 1)
    state = Path(tempfile.mkdtemp(prefix=f"parlor-recovery-{fault}-"))
    run = LocalRun.prepare(state, media_nodes=nodes)
    run.env["WORKERS"] = str(workers)
    run.start()
    try:
        status, space = run.call("POST", "/spaces", "u-alice", {"title": "Recovery"})
        assert status == 201, space
        space_id = space["space_id"]

        def participant(user: str, tone: float | None = None) -> Participant:
            return Participant(run.api, lambda: run.issuer.mint(user), space_id, tone_hz=tone,
                               give_up_seconds=RECOVERY_TIMEOUT_SECONDS)

        host = participant("u-alice", 440)
        audience = [participant(f"u-fan{n:03d}") for n in range(listeners)]
        await host.start()
        for person in audience:
            await person.start()
        await asyncio.sleep(SETTLE_SECONDS)
        assert all(p.session and p.session.frames for p in audience), "not all listening"
        holder = run.node_index(str(host.node_id))
        taker = holder if fault == "worker" else 1 - holder
        victims = node_pids(run, holder)
        if fault == "worker":
            health = run.node_health(holder)
            victims = [next(int(w["pid"]) for w in health["workers"] if w["rooms"])]
        calls_before = sum(len(p.api_seconds) for p in audience)
        quiet_cpu = cpu_seconds(node_pids(run, taker))
        await asyncio.sleep(SETTLE_SECONDS)
        quiet_cpu = cpu_seconds(node_pids(run, taker)) - quiet_cpu

        killed = time.monotonic()
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        storm_start_cpu = cpu_seconds(node_pids(run, taker)) if fault == "node" else 0.0
        deadline = killed + RECOVERY_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not all(
                p.session is not None and p.session.first_frame_at is not None
                and p.session.first_frame_at > killed for p in audience):
            await asyncio.sleep(0.1)
        recovered = [p.session.first_frame_at - killed for p in audience
                     if p.session is not None and p.session.first_frame_at is not None
                     and p.session.first_frame_at > killed]
        storm_seconds = time.monotonic() - killed
        # The taker's workers may have restarted (the worker fault): read them now.
        storm_cpu = cpu_seconds(node_pids(run, taker)) - storm_start_cpu \
            if fault == "node" else None
        api = [s for p in audience for s in p.api_seconds[1:]]
        await asyncio.gather(host.stop(), *(p.stop() for p in audience))
        run.call("POST", f"/spaces/{space_id}/end", "u-alice")
        result: dict[str, Any] = {
            "listeners": listeners,
            "recovered": len(recovered),
            "crash_to_audio_p50_seconds": round(percentile(recovered, 0.5), 2),
            "crash_to_audio_p95_seconds": round(percentile(recovered, 0.95), 2),
            "crash_to_audio_max_seconds": round(max(recovered), 2),
            "goal_p95_seconds": GOALS[fault],
            "goal_met": len(recovered) == listeners
            and percentile(recovered, 0.95) <= GOALS[fault],
            "rejoin_storm": {
                "api_join_calls": sum(len(p.api_seconds) for p in audience) - calls_before,
                "api_join_p50_ms": round(1000 * statistics.median(api), 1) if api else None,
                "api_join_p95_ms": round(1000 * percentile(api, 0.95), 1) if api else None,
                "seconds": round(storm_seconds, 1),
            },
        }
        if storm_cpu is not None:
            result["rejoin_storm"]["taking_node_cpu_percent"] = round(
                100 * storm_cpu / storm_seconds, 1)
            result["rejoin_storm"]["taking_node_cpu_percent_before"] = round(
                100 * quiet_cpu / SETTLE_SECONDS, 1)
        return result
    finally:
        run.kill()


async def main(listeners: int, out: Path) -> None:
    started = time.time()
    results = {fault: await one_fault(fault, listeners) for fault in ("worker", "node")}
    for fault, result in results.items():
        print(f"{fault}: p50 {result['crash_to_audio_p50_seconds']} s, "
              f"p95 {result['crash_to_audio_p95_seconds']} s "
              f"({result['recovered']}/{listeners} back), goal met: {result['goal_met']}")
    write_results(out, "recovery.json", f"python -m bench.recovery --listeners {listeners}",
                  started, {"faults": results}, pinned=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Crash to audio, under make up")
    parser.add_argument("--listeners", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    asyncio.run(main(args.listeners, args.out))
