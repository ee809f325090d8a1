"""The media node benchmark: `python -m bench.media` (see docs/performance.md).

One run, on this machine, of the real node (`python -m media_node`, a subprocess pinned
to CPU 0) under a load generator in other processes (pinned to the other CPUs, its own
CPU and its sockets' kernel drops reported): one speaker publishing tone bursts, in a
process of its own, and many lightweight listeners.

1. The three fan-out paths side by side, same room, same listener count: CPU
   microseconds per outbound listener packet (total, and above the room's cost with no
   listeners), listeners per core at 50 packets/s, speech-onset latency through the
   node, offer-to-answer time; then the fast path at scale, and the ratios.
2. A saturation run of the fast path: a join storm of 500 listeners at 50/s, then more
   listeners in steps until loss passes 0.5% (or the load generator is the one that
   cannot keep up); join times, loss, CPU and RSS per step.
3. The issue's targets, each with the figure it is judged on and whether it was met.

Results: bench/results/media.json and bench/results/media.png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from moto.server import ThreadedMotoServer

from .loadgen import latencies
from .plot import plot

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
NODES_TABLE = "parlor-media-nodes-bench"
PACKETS_PER_SECOND = 50
LOSS_LIMIT = 0.005
NODE_CPU = 0
# Past this share of its CPUs, or with its sockets overflowing, the load generator (not
# the node) may be what limits a step.
LOAD_CPU_LIMIT = 0.9
# A node that missed ticks while using less than this share of its core was kept off
# it (other processes on a shared machine; `node_waiting_for_cpu_percent` shows how
# much), not saturated: its step is measured again.
STARVED_NODE_CPU = 0.85
STEP_TRIES = 3
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 2)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_tree(pid: int) -> list[int]:
    """The process and its descendants: the node's supervisor and its workers."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            children += [int(c) for c in (task / "children").read_text().split()]
    return [pid, *(p for child in children for p in process_tree(child))]


def runqueue_wait(pid: int) -> float:
    """Seconds the process's main thread (the node's event loop) spent ready to run but
    waiting for a CPU: on a shared machine, how much other processes held it back."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def process_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load_cpus() -> set[int]:
    """Every CPU but the node's, when there is one."""
    return set(range(os.cpu_count() or 1)) - {NODE_CPU} or {NODE_CPU}


def pinned(cpus: set[int]) -> Any:
    def pin() -> None:
        os.sched_setaffinity(0, cpus)

    return pin


class Aws:
    """An embedded AWS (moto) with the node registry table and the events queue."""

    def __init__(self) -> None:
        port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.server.start()
        self.endpoint = f"http://127.0.0.1:{port}"
        self.env = {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_ENDPOINT_URL": self.endpoint,
        }
        session = boto3.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's dummy credentials
            region_name="us-east-1",
        )
        session.client("dynamodb", endpoint_url=self.endpoint).create_table(
            TableName=NODES_TABLE,
            KeySchema=[{"AttributeName": "node_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "node_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        sqs = session.client("sqs", endpoint_url=self.endpoint)
        self.events_queue_url = sqs.create_queue(QueueName="parlor-media-events-bench")["QueueUrl"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MediaNode:
    def __init__(self, aws: Aws, public_pem: str, fanout: str, log_dir: Path) -> None:
        port = free_port()
        self.node_id = f"node-bench-{secrets.token_hex(3)}"
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            **aws.env,
            "NODE_ID": self.node_id,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "PUBLIC_URL": self.url,
            "JOIN_TOKEN_PUBLIC_KEY": public_pem,
            "NODES_TABLE": NODES_TABLE,
            "MEDIA_EVENTS_QUEUE_URL": aws.events_queue_url,
            "CAPACITY": "100000",
            "DRAIN_TIMEOUT_SECONDS": "1",
            "RTP_FANOUT": fanout,
            # One core: the supervisor and one worker, every room on that worker.
            "WORKERS": "1",
        }
        self.log = (log_dir / f"{self.node_id}-{fanout}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "media_node"],
            cwd=REPO,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            # Pinned before exec, so every thread the node starts stays on its core.
            preexec_fn=pinned({NODE_CPU}),
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):  # noqa: S310
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the node did not start; see {self.log.name}") from None
                time.sleep(0.2)

    def cpu(self) -> float:
        return sum(process_cpu(pid) for pid in process_tree(self.process.pid))

    def rss_mb(self) -> float:
        return sum(process_rss_mb(pid) for pid in process_tree(self.process.pid))

    def stop(self) -> None:
        # SIGKILL: a graceful drain of thousands of peers would only slow the run.
        self.process.kill()
        self.process.wait()
        self.log.close()


class LoadGenerator:
    def __init__(self, node: MediaNode, space: str, private_pem: str, name: str) -> None:
        settings = {
            "url": node.url,
            "space": space,
            "node_id": node.node_id,
            "private_key": private_pem,
            "name": name,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.media.loadgen", json.dumps(settings)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            preexec_fn=pinned(load_cpus()),
            text=True,
        )

    def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the load generator died")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def cpu(self) -> float:
        return process_cpu(self.process.pid)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


class Window:
    """Node and load-generator figures over an interval of steady load."""

    def __init__(self, node: MediaNode, load: LoadGenerator, speaker: LoadGenerator) -> None:
        self.node, self.load, self.speaker = node, load, speaker
        self.snapshot = load.ask("snapshot")
        self.node_cpu = node.cpu()
        self.node_wait = runqueue_wait(node.process.pid)
        self.load_cpu = load.cpu()
        self.at = time.monotonic()

    def close(self) -> dict[str, Any]:
        end = self.load.ask("snapshot")
        seconds = time.monotonic() - self.at
        node_cpu = self.node.cpu() - self.node_cpu
        node_wait = runqueue_wait(self.node.process.pid) - self.node_wait
        received = end["received"] - self.snapshot["received"]
        expected = end["expected"] - self.snapshot["expected"]
        # Loss by sequence numbers misses ticks the node never sent (a starved mixer
        # skips ahead), so the shortfall against 50 packets/s per listener counts too.
        due = end["receiving"] * PACKETS_PER_SECOND * seconds
        load_cpu = (self.load.cpu() - self.load_cpu) / seconds
        kernel_drops = end["kernel_drops"] - self.snapshot["kernel_drops"]
        return {
            "seconds": round(seconds, 2),
            "listeners": end["listeners"],
            "receiving": end["receiving"],
            "packets": received,
            "loss": round(1 - received / expected, 5) if expected else None,
            "shortfall": round(max(0.0, 1 - received / due), 5) if due else None,
            "node_cpu_percent": round(100 * node_cpu / seconds, 1),
            "node_waiting_for_cpu_percent": round(100 * node_wait / seconds, 1),
            "node_cpu_seconds": node_cpu,
            "load_cpu_percent": round(100 * load_cpu, 1),
            "load_kernel_drops": kernel_drops,
            "load_generator_bound": kernel_drops > 0
            or load_cpu > LOAD_CPU_LIMIT * len(load_cpus()),
            "receiver_reports_sent": end["receiver_reports_sent"]
            - self.snapshot["receiver_reports_sent"],
            "node_rss_mb": round(self.node.rss_mb(), 1),
            "latency_ms": latencies(self.speaker.ask("snapshot")["sent"], end["heard"]),
        }


def compare(
    aws: Aws, keys: tuple[str, str], fanout: str, listeners: int, seconds: float, logs: Path
) -> dict[str, Any]:
    """One room, one speaker, `listeners` listeners, on one fan-out path."""
    private_pem, public_pem = keys
    node = MediaNode(aws, public_pem, fanout, logs)
    space = f"sp_bench_{secrets.token_hex(3)}"
    speaker = LoadGenerator(node, space, private_pem, "c")
    load = LoadGenerator(node, space, private_pem, "c")
    try:
        speaker.ask("speaker")
        time.sleep(3)
        idle = Window(node, load, speaker)
        time.sleep(5)
        empty = idle.close()
        joins = load.ask("join", count=listeners, rate=PACKETS_PER_SECOND)
        time.sleep(3)
        window = Window(node, load, speaker)
        time.sleep(seconds)
        steady = window.close()
    finally:
        load.stop()
        speaker.stop()
        node.stop()
    packets = steady["packets"]
    idle_cpu = empty["node_cpu_percent"] / 100 * steady["seconds"]
    total_us = 1e6 * steady["node_cpu_seconds"] / packets if packets else None
    marginal_us = 1e6 * (steady["node_cpu_seconds"] - idle_cpu) / packets if packets else None
    latencies = steady.pop("latency_ms")
    return {
        "fanout": fanout,
        "listeners": listeners,
        "joined": joins["joined"],
        "us_per_packet": round(total_us, 1) if total_us else None,
        "us_per_packet_above_empty_room": round(marginal_us, 1) if marginal_us else None,
        "listeners_per_core": int(1e6 / total_us / PACKETS_PER_SECOND) if total_us else None,
        "empty_room_node_cpu_percent": empty["node_cpu_percent"],
        "latency_ms": {
            "p50": percentile(latencies, 0.5),
            "p95": percentile(latencies, 0.95),
            "samples": len(latencies),
        },
        "answer_ms_p50": percentile(joins["answer_ms"], 0.5),
        "join_ms_p95": percentile(joins["join_ms"], 0.95),
        **steady,
    }


def saturate(
    aws: Aws, keys: tuple[str, str], storm: int, step: int, limit: int, logs: Path
) -> dict[str, Any]:
    """Fast path, one worker on one core: add listeners until loss passes 0.5%.

    A step where the load generator used up its CPUs or its sockets overflowed says
    nothing about the node's limit: the run stops there and says so.
    """
    private_pem, public_pem = keys
    node = MediaNode(aws, public_pem, "fast", logs)
    space = f"sp_bench_{secrets.token_hex(3)}"
    speaker = LoadGenerator(node, space, private_pem, "s")
    load = LoadGenerator(node, space, private_pem, "s")
    steps: list[dict[str, Any]] = []
    stopped_by = "limit"
    try:
        speaker.ask("speaker")
        time.sleep(2)
        rss_empty = node.rss_mb()
        storm_window = Window(node, load)
        storm_result = load.ask("join", count=storm, rate=PACKETS_PER_SECOND)
        during_storm = storm_window.close()
        count = storm
        while True:
            result = measure_step(node, load)
            steps.append(result)
            print(f"  {count} listeners: {json.dumps(result)}", flush=True)
            if result["loss"] is None or result["lost"] > LOSS_LIMIT:
                if result["contended"]:
                    stopped_by = "contention"
                elif result["load_generator_bound"]:
                    stopped_by = "load_generator"
                else:
                    stopped_by = "loss"
                break
            if result["load_generator_bound"]:
                stopped_by = "load_generator"
                break
            if count >= limit:
                break
            load.ask("join", count=step, rate=2 * PACKETS_PER_SECOND)
            count += step
    finally:
        load.stop()
        speaker.stop()
        node.stop()
    within = [
        s["listeners"]
        for s in steps
        if s["loss"] is not None
        and s["lost"] <= LOSS_LIMIT
        and not s["load_generator_bound"]
        and not s["contended"]
    ]
    rss = [(s["listeners"], s["node_rss_mb"]) for s in steps]
    return {
        "join_storm": {
            "listeners": storm,
            "rate_per_second": PACKETS_PER_SECOND,
            "joined": storm_result["joined"],
            "failed": storm_result["failed"],
            "answer_ms_p50": percentile(storm_result["answer_ms"], 0.5),
            "join_ms_p50": percentile(storm_result["join_ms"], 0.5),
            "join_ms_p95": percentile(storm_result["join_ms"], 0.95),
            # Who had the CPU while it lasted: a storm measured while the node waited
            # for its core measures the machine's other load too.
            "node_cpu_percent": during_storm["node_cpu_percent"],
            "node_waiting_for_cpu_percent": during_storm["node_waiting_for_cpu_percent"],
            "load_cpu_percent": during_storm["load_cpu_percent"],
        },
        "steps": steps,
        "max_listeners_within_loss_limit": max(within) if within else 0,
        # "loss": the node's limit was found; "load_generator": the generator's was, and
        # the node's is above the last step; "contention": the node kept missing ticks
        # without using its core (other processes had it); "limit": none, up to --limit.
        "stopped_by": stopped_by,
        "loss_limit": LOSS_LIMIT,
        "rss_empty_room_mb": round(rss_empty, 1),
        "rss_mb_per_100_listeners": slope_per_100(rss),
    }


def measure_step(node: MediaNode, load: LoadGenerator) -> dict[str, Any]:
    """A step's steady window; again (the least lossy kept) while the node was starved."""
    best: dict[str, Any] | None = None
    for attempt in range(STEP_TRIES):
        time.sleep(3 if attempt == 0 else 1)
        window = Window(node, load)
        time.sleep(6)
        result = window.close()
        result.pop("latency_ms")
        result["lost"] = max(result["loss"] or 0.0, result["shortfall"] or 0.0)
        result["contended"] = (
            result["lost"] > LOSS_LIMIT and result["node_cpu_percent"] < 100 * STARVED_NODE_CPU
        )
        if best is None or result["lost"] < best["lost"]:
            best = result
        if not result["contended"]:
            break
    assert best is not None
    best["tries"] = attempt + 1
    return best


def slope_per_100(points: list[tuple[int, float]]) -> float | None:
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


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per path and listener count: medians over its rounds, and their spread."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["fanout"], run["listeners"]), []).append(run)
    summary = []
    for (fanout, listeners), group in groups.items():
        if not any(run.get("us_per_packet") for run in group):
            summary.append(group[0])
            continue

        def middle(key: str, group: list[dict[str, Any]] = group) -> float | None:
            return median([run.get(key) for run in group])

        total = middle("us_per_packet")
        summary.append(
            {
                "fanout": fanout,
                "listeners": listeners,
                "rounds": len(group),
                "us_per_packet": total,
                "us_per_packet_each_round": [run.get("us_per_packet") for run in group],
                "us_per_packet_above_empty_room": middle("us_per_packet_above_empty_room"),
                "listeners_per_core": int(1e6 / total / PACKETS_PER_SECOND) if total else None,
                "empty_room_node_cpu_percent": middle("empty_room_node_cpu_percent"),
                "node_cpu_percent": middle("node_cpu_percent"),
                "node_waiting_for_cpu_percent": middle("node_waiting_for_cpu_percent"),
                "load_cpu_percent": middle("load_cpu_percent"),
                "latency_ms_p50": median([run["latency_ms"]["p50"] for run in group]),
                "latency_ms_p95": median([run["latency_ms"]["p95"] for run in group]),
                "answer_ms_p50": middle("answer_ms_p50"),
                "join_ms_p95": middle("join_ms_p95"),
                "node_rss_mb": middle("node_rss_mb"),
                "worst_loss": max((run["loss"] or 0.0) for run in group),
                "worst_shortfall": max((run["shortfall"] or 0.0) for run in group),
                "load_kernel_drops": sum(run["load_kernel_drops"] for run in group),
                "load_generator_bound": any(run["load_generator_bound"] for run in group),
            }
        )
    return summary


def by_round(runs: list[dict[str, Any]]) -> list[dict[tuple[str, int], dict[str, Any]]]:
    rounds: dict[int, dict[tuple[str, int], dict[str, Any]]] = {}
    for run in runs:
        if "round" in run:
            rounds.setdefault(run["round"], {})[(run["fanout"], run["listeners"])] = run
    return list(rounds.values())


def stock_over_fast(
    by_fanout: dict[tuple[str, int], dict[str, Any]], listeners: int, at_scale: int
) -> dict[str, float | None]:
    """How many times the stock sender's CPU per packet the fast path's is, three ways.

    At the same listener count, total: the room's own cost (decode, mix, encode, the
    node's housekeeping) is in both and, at 100 listeners, is a large part of each
    packet. Above the empty room, same count: the fan-out alone, per listener packet.
    The fast path at scale against stock at the comparison count: what a node gives
    per core, since the stock sender cannot carry that many listeners on one core.
    """
    fast = by_fanout.get(("fast", listeners), {})
    stock = by_fanout.get(("aiortc", listeners), {})
    scale = by_fanout.get(("fast", at_scale), {})

    def ratio(numerator: float | None, denominator: float | None) -> float | None:
        return round(numerator / denominator, 1) if numerator and denominator else None

    return {
        f"total_at_{listeners}": ratio(stock.get("us_per_packet"), fast.get("us_per_packet")),
        f"above_empty_room_at_{listeners}": ratio(
            stock.get("us_per_packet_above_empty_room"),
            fast.get("us_per_packet_above_empty_room"),
        ),
        f"fast_at_{at_scale}_total_vs_stock_at_{listeners}": ratio(
            stock.get("us_per_packet"), scale.get("us_per_packet")
        ),
    }


def targets(
    by_fanout: dict[tuple[str, int], dict[str, Any]],
    ratios: dict[str, float | None],
    saturation: dict[str, Any],
    listeners: int,
    at_scale: int,
) -> dict[str, dict[str, Any]]:
    """Issue 7's targets, each with the figure it is judged on, as measured."""
    scale = by_fanout.get(("fast", at_scale), {})
    storm = saturation["join_storm"]
    above = ratios[f"above_empty_room_at_{listeners}"]
    total = ratios[f"total_at_{listeners}"]

    def met(value: float | None, limit: float, at_most: bool) -> bool | None:
        if value is None:
            return None
        return value <= limit if at_most else value >= limit

    return {
        "us_per_packet_at_most_15": {
            "figure": f"fast path, {at_scale} listeners, total node CPU per packet",
            "value": scale.get("us_per_packet"),
            "met": met(scale.get("us_per_packet"), 15, at_most=True),
        },
        "7x_stock_fanout": {
            "figure": f"stock over fast, CPU per packet above the empty room, {listeners} each",
            "value": above,
            "met": met(above, 7, at_most=False),
        },
        "7x_stock_total_same_count": {
            "figure": f"stock over fast, total CPU per packet, {listeners} listeners each",
            "value": total,
            "met": met(total, 7, at_most=False),
        },
        "join_storm_p95_at_most_1s": {
            "figure": f"{storm['listeners']} listeners at {storm['rate_per_second']}/s, "
            "offer to first audio packet, p95 ms",
            "value": storm["join_ms_p95"],
            "met": met(storm["join_ms_p95"], 1000, at_most=True) and storm["failed"] == 0,
            "answer_ms_p50": storm["answer_ms_p50"],
        },
        "rss_mb_per_100_listeners": {
            "figure": "node RSS growth over the saturation steps (reported, no target)",
            "value": saturation["rss_mb_per_100_listeners"],
            "met": None,
        },
    }


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node_pinned_to_cpu": NODE_CPU,
        "load_generator_pinned_to_cpus": sorted(load_cpus()),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listeners", type=int, default=100, help="per comparison run")
    parser.add_argument("--fast-listeners", type=int, default=1000, help="fast path at scale")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window")
    parser.add_argument("--storm", type=int, default=500)
    parser.add_argument("--step", type=int, default=250)
    parser.add_argument("--limit", type=int, default=4000, help="saturation stops here")
    parser.add_argument("--out", type=Path, default=RESULTS)
    # Janus AudioBridge under the same load; imported here, as janus.py imports this
    # module's helpers.
    from . import janus

    parser.add_argument(
        "--janus",
        action=argparse.BooleanOptionalAction,
        default=janus.installed(),
        help=f"also measure Janus's AudioBridge (default: on when {janus.JANUS} exists)",
    )
    parser.add_argument("--janus-listeners", type=int, nargs="+", default=janus.LISTENERS)
    parser.add_argument(
        "--rounds", type=int, default=3, help="comparison rounds (paths interleaved in each)"
    )
    args = parser.parse_args()

    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    keys = (private_pem, public_pem)
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / "media-logs"
    logs.mkdir(exist_ok=True)
    # moto's server logs every request of the nodes' heartbeats and long polls.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    aws = Aws()
    started = time.time()
    try:
        runs = []
        # On a shared machine, a path measured while another process ran is slower
        # than one measured just before: every round measures every path, and ratios
        # are taken within a round.
        for fanout, listeners, round_ in (
            (fanout, listeners, round_)
            for round_ in range(args.rounds)
            for fanout, listeners in (
                ("fast", args.listeners),
                ("aiortc", args.listeners),
                ("aiortc-encode", args.listeners),
                ("fast", args.fast_listeners),
            )
        ):
            print(f"{fanout}, {listeners} listeners, round {round_ + 1}", flush=True)
            run = compare(aws, keys, fanout, listeners, args.seconds, logs)
            runs.append(run | {"round": round_})
            print(f"  {json.dumps(runs[-1])}", flush=True)
        if args.janus:
            runs.extend(janus.runs(args.janus_listeners, args.seconds, logs))
        else:
            runs.append(janus.not_measured(args.janus_listeners[0], "--no-janus"))
        print("saturation (fast path)", flush=True)
        saturation = saturate(aws, keys, args.storm, args.step, args.limit, logs)
    finally:
        aws.server.stop()
    summary = summarize(runs)
    by_fanout = {(r["fanout"], r["listeners"]): r for r in summary}
    each_round = [
        stock_over_fast(paths, args.listeners, args.fast_listeners) for paths in by_round(runs)
    ]
    ratios = {name: median([r[name] for r in each_round]) for name in each_round[0]}
    results = {
        "command": " ".join(["python -m bench.media", *sys.argv[1:]]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_seconds": round(time.time() - started),
        "machine": machine(),
        # Each path's median over the rounds; every run is in comparison_runs.
        "comparison": summary,
        "comparison_runs": runs,
        # The median over the rounds of each round's ratio.
        "stock_over_fast_ratio": ratios,
        "saturation": saturation,
        "targets": targets(by_fanout, ratios, saturation, args.listeners, args.fast_listeners),
    }
    (args.out / "media.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "media.png")
    print(json.dumps({"stock_over_fast_ratio": ratios, "targets": results["targets"]}, indent=2))
    print(f"wrote {args.out / 'media.json'} and {args.out / 'media.png'}")


if __name__ == "__main__":
    main()
