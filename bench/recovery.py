"""`make bench`: crash to audio. A Space of one host and LISTENERS listeners under `make
up` (real processes), each a reconnecting participant (peer/participant.py). A fault is
injected with SIGKILL, and for each listener the time from the kill to the first audio
packet of its new connection is taken (listeners count packets; only the host decodes):

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
JOINED_TIMEOUT_SECONDS = 120.0


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


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU ticks of the whole machine so far (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


class LoopLag:
    """How late this process's event loop runs a callback due every 50 ms: while it
    lags, every client in it (WebRTC, its API calls' timing) waits too."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(0.05)
            self.lags.append(time.monotonic() - asked - 0.05)

    def stop(self) -> dict[str, float]:
        self._task.cancel()
        return {"client_loop_lag_ms_p95": round(1000 * percentile(self.lags, 0.95), 1),
                "client_loop_lag_ms_max": round(1000 * max(self.lags), 1)}


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
            # Listeners count the packets they get rather than decode them: fifty Opus
            # decoders would take this process most of a core on a two-core machine,
            # which the node and the API need during the storm.
            return Participant(run.api, lambda: run.issuer.mint(user), space_id, tone_hz=tone,
                               give_up_seconds=RECOVERY_TIMEOUT_SECONDS,
                               decode=tone is not None)

        host = participant("u-alice", 440)
        audience = [participant(f"u-fan{n:03d}") for n in range(listeners)]
        await host.start()
        for person in audience:
            await person.start()
        # Fifty first joins each write a membership; on one machine they take a while.
        deadline = time.monotonic() + JOINED_TIMEOUT_SECONDS
        while not all(p.session and p.session.frames for p in audience):
            assert time.monotonic() < deadline, "not all listening"
            await asyncio.sleep(0.5)
        await asyncio.sleep(SETTLE_SECONDS)
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

        assert run.process is not None
        # `make up`'s own process: the API, the web origin, the embedded AWS and the
        # pumps; and this one, every participant's WebRTC client.
        local_pids = [run.process.pid]
        local_cpu, client_cpu = cpu_seconds(local_pids), time.process_time()
        # Everything else `make up` started: the embedded AWS, the nodes, coturn.
        children = [int(pid) for pid in (run.state / "children.pids").read_text().split()]
        aws_pid = children[0]
        aws_cpu, busy_before = cpu_seconds([aws_pid]), machine_busy()
        lag = LoopLag()
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
        lags = lag.stop()
        local_cpu = cpu_seconds(local_pids) - local_cpu
        client_cpu = time.process_time() - client_cpu
        aws_cpu = cpu_seconds([aws_pid]) - aws_cpu
        busy_after = machine_busy()
        machine_percent = 100 * (busy_after[0] - busy_before[0]) / max(
            1, busy_after[1] - busy_before[1])
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
                # CPU in percent of one core over the storm: `make up`'s own process
                # (the API, the web origin, the pumps), the embedded AWS's, and the
                # clients (this process).
                "make_up_cpu_percent": round(100 * local_cpu / storm_seconds, 1),
                "embedded_aws_cpu_percent": round(100 * aws_cpu / storm_seconds, 1),
                "clients_cpu_percent": round(100 * client_cpu / storm_seconds, 1),
                # Of all the machine's CPUs: near 100, the storm waited for a CPU.
                "machine_busy_percent": round(machine_percent, 1),
                **lags,
                "attempts_per_listener_max": max(
                    (p.outages[-1].attempts for p in audience if p.outages), default=0),
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
