"""The media benchmark's parts: the processes it runs and what it reads of them.

The server under test (the Parlor node, or Janus) runs pinned to NODE_CPU; the load
generators, and the orchestrator with its embedded moto, run on every other CPU, so
that the server's core holds the server alone (and whatever else the machine runs:
`others_on_node_cpu_percent` says how much). All figures come from /proc: CPU time of a
process tree, a thread's wait for a CPU (schedstat), RSS, a CPU's busy time.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import boto3
from moto.server import ThreadedMotoServer

from .loadgen import latencies

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
NODES_TABLE = "parlor-media-nodes-bench"
# The paths the benchmark measures, by the name its results use: the node's own fast
# path, and the baselines of bench/media/senders.py run in the same node.
SENDERS = {
    "fast": "fast",
    "aiortc": "bench.media.senders:StockSender",
    "aiortc-encode": "bench.media.senders:EncodingSender",
}
PACKETS_PER_SECOND = 50
NODE_CPU = 0
# The load generator is one Python process: past this share of one core (what it ran
# plus what it waited for while runnable: on a 2-CPU machine it shares its CPU with the
# speaker and the orchestrator), or with its sockets overflowing, it (not the server)
# may be what limits a window. Reading late, it counts packets as missing that the
# node sent in time, and their latency as the node's.
LOAD_CPU_LIMIT = 0.9
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Probe listeners (they decode, for latency) per join: one in 20, at most 10 per join,
# spread over it and so over the node's fan-out order.
PROBE_EVERY = 20
PROBES_PER_JOIN = 10


def probes(listeners: int) -> int:
    return min(PROBES_PER_JOIN, max(1, listeners // PROBE_EVERY))


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


def runqueue_wait(pid: int, tid: int | None = None) -> float:
    """Seconds one thread (by default the process's main thread) spent ready to run but
    waiting for a CPU: on a shared machine, how much other work held it back."""
    return int(Path(f"/proc/{pid}/task/{tid or pid}/schedstat").read_text().split()[1]) / 1e9


def process_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_busy(cpu: int) -> float:
    """Seconds one CPU has spent busy (any process, interrupts, the hypervisor's steal)
    since boot, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        fields = line.split()
        if fields[0] == f"cpu{cpu}":
            # user nice system idle iowait irq softirq steal: all but idle and iowait.
            ticks = [int(v) for v in fields[1:9]]
            return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS
    return 0.0


def load_cpus() -> set[int]:
    """Every CPU but the node's, when there is one."""
    return set(range(os.cpu_count() or 1)) - {NODE_CPU} or {NODE_CPU}


def pinned(cpus: set[int], quota: CpuQuota | None = None) -> Callable[[], None]:
    """A preexec_fn: the child, and every thread and process it starts, stays on these
    CPUs (and within the quota's share of them, when one is given)."""

    def pin() -> None:
        os.sched_setaffinity(0, cpus)
        if quota is not None:
            quota.enter()

    return pin


# cgroup v1's CPU controller, where a node may be held to a share of its core.
CPU_CGROUPS = Path("/sys/fs/cgroup/cpu")
# CFS bandwidth period for a held node: the room's 20 ms tick, so that a tick's burst
# of sends can use the share of that tick (a shorter period throttles the node in the
# middle of each burst; the default 100 ms lets it run five ticks' worth, then stall).
QUOTA_PERIOD_US = 20000


class CpuQuota:
    """A cgroup that holds its processes to `share` of one CPU (CFS bandwidth control).

    Lets a saturation run find where a node that has only part of a core starts to lose
    packets, when the machine cannot load a whole core's worth of listeners."""

    def __init__(self, share: float) -> None:
        self.share = share
        self.path = CPU_CGROUPS / f"parlor-bench-{secrets.token_hex(3)}"
        self.path.mkdir()
        (self.path / "cpu.cfs_period_us").write_text(str(QUOTA_PERIOD_US))
        (self.path / "cpu.cfs_quota_us").write_text(str(int(share * QUOTA_PERIOD_US)))

    @staticmethod
    def available() -> bool:
        return os.access(CPU_CGROUPS, os.W_OK)

    def enter(self) -> None:
        """In a preexec_fn: this process (and what it starts later) joins the cgroup."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def throttled_seconds(self) -> float:
        for line in (self.path / "cpu.stat").read_text().splitlines():
            name, value = line.split()
            if name == "throttled_time":
                return int(value) / 1e9
        return 0.0

    def remove(self) -> None:
        """Once its processes are gone (a killed process leaves its cgroup on exit)."""
        deadline = time.monotonic() + 10
        while (self.path / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(OSError):
            self.path.rmdir()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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

    def stop(self) -> None:
        self.server.stop()


class Server(Protocol):
    """What a window reads of the server under test: the Parlor node or Janus."""

    def cpu(self) -> float:
        """CPU seconds used so far, all its processes and threads."""

    def rss_mb(self) -> float:
        """Resident memory now, all its processes."""

    def waiting(self) -> float:
        """Seconds the thread that keeps the room's 20 ms clock has waited for a CPU."""


class MediaNode:
    """`python -m media_node`: its supervisor and its workers (one unless asked), all
    pinned to NODE_CPU."""

    def __init__(
        self,
        aws: Aws,
        public_pem: str,
        fanout: str,
        log_dir: Path,
        quota: CpuQuota | None = None,
        workers: int = 1,
        worker_listeners: int = 100_000,
    ) -> None:
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
            "NODES_TABLE": NODES_TABLE,
            "MEDIA_EVENTS_QUEUE_URL": aws.events_queue_url,
            "JOIN_TOKEN_PUBLIC_KEY": public_pem,
            "CAPACITY": "100000",
            "DRAIN_TIMEOUT_SECONDS": "1",
            "ROOM_SENDER": SENDERS[fanout],
            # By default one worker, which owns the room and every listener of it (with
            # the default of 800 a lone worker would refuse the 801st listener as
            # `full`: there is no other worker to relay the Space).
            "WORKERS": str(workers),
            "WORKER_LISTENERS": str(worker_listeners),
        }
        self.log = (log_dir / f"{self.node_id}-{fanout}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "media_node"],
            cwd=REPO,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            # Pinned before exec, so the workers it starts, and their threads, stay on
            # the same core.
            preexec_fn=pinned({NODE_CPU}, quota),
        )
        self.worker_pid = self._wait_for_worker()

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/health", timeout=2) as reply:  # noqa: S310
            health: dict[str, Any] = json.loads(reply.read())
        return health

    def _wait_for_worker(self) -> int:
        """The first worker's pid, once the supervisor says every worker is ready."""
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError, ValueError):
                workers = self.health()["workers"]
                if workers and all(w["ready"] for w in workers):
                    return int(workers[0]["pid"])
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the node did not start; see {self.log.name}")
            time.sleep(0.2)

    def cpu(self) -> float:
        return sum(process_cpu(pid) for pid in process_tree(self.process.pid))

    def rss_mb(self) -> float:
        return sum(process_rss_mb(pid) for pid in process_tree(self.process.pid))

    def waiting(self) -> float:
        # The worker's main thread runs the event loop: the room's clock, the fan-out,
        # ICE and DTLS. The supervisor only polls it; its own waits would say nothing.
        return runqueue_wait(self.worker_pid)

    def stop(self) -> None:
        # SIGKILL: a graceful drain of thousands of peers would only slow the run. The
        # worker would see its stdin close and close its rooms on its own, which with
        # thousands of peers (or a CPU quota) takes longer than the next run can wait.
        self.process.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.worker_pid, signal.SIGKILL)
        self.process.wait()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{self.worker_pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.log.close()


class LoadGenerator:
    """A `bench.media.loadgen` process, pinned off the server's core, driven over stdio."""

    def __init__(self, settings: dict[str, Any]) -> None:
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

    def waiting(self) -> float:
        return runqueue_wait(self.process.pid)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


class Window:
    """Server and load-generator figures over an interval of steady load."""

    def __init__(self, server: Server, load: LoadGenerator, speaker: LoadGenerator) -> None:
        self.server, self.load, self.speaker = server, load, speaker
        self.snapshot = load.ask("snapshot")
        self.server_cpu = server.cpu()
        self.server_wait = server.waiting()
        self.node_cpu_busy = cpu_busy(NODE_CPU)
        self.load_cpu = load.cpu()
        self.load_wait = load.waiting()
        self.at = time.monotonic()

    def close(self) -> dict[str, Any]:
        end = self.load.ask("snapshot")
        seconds = time.monotonic() - self.at
        server_cpu = self.server.cpu() - self.server_cpu
        server_wait = self.server.waiting() - self.server_wait
        others = cpu_busy(NODE_CPU) - self.node_cpu_busy - server_cpu
        received = end["received"] - self.snapshot["received"]
        expected = end["expected"] - self.snapshot["expected"]
        # Loss by sequence numbers misses ticks the server never sent (a starved mixer
        # skips ahead), so the shortfall against 50 packets/s per listener counts too.
        due = end["receiving"] * PACKETS_PER_SECOND * seconds
        load_cpu = (self.load.cpu() - self.load_cpu) / seconds
        load_wait = (self.load.waiting() - self.load_wait) / seconds
        kernel_drops = end["kernel_drops"] - self.snapshot["kernel_drops"]
        return {
            "seconds": round(seconds, 2),
            "listeners": end["listeners"],
            "receiving": end["receiving"],
            "packets": received,
            "loss": round(1 - received / expected, 5) if expected else None,
            "shortfall": round(max(0.0, 1 - received / due), 5) if due else None,
            "node_cpu_percent": round(100 * server_cpu / seconds, 1),
            "node_cpu_seconds": round(server_cpu, 3),
            "node_waiting_for_cpu_percent": round(100 * server_wait / seconds, 1),
            # The node's core, used by anything else (the kernel's own threads included).
            "others_on_node_cpu_percent": round(max(0.0, 100 * others / seconds), 1),
            "node_rss_mb": round(self.server.rss_mb(), 1),
            "load_cpu_percent": round(100 * load_cpu, 1),
            "load_waiting_for_cpu_percent": round(100 * load_wait, 1),
            "load_kernel_drops": kernel_drops,
            "load_generator_bound": kernel_drops > 0 or load_cpu + load_wait > LOAD_CPU_LIMIT,
            "receiver_reports_sent": end["receiver_reports_sent"]
            - self.snapshot["receiver_reports_sent"],
            "latency_ms": latencies(self.speaker.ask("snapshot")["sent"], end["heard"]),
        }


def measure(
    server: Server,
    speaker: LoadGenerator,
    load: LoadGenerator,
    listeners: int,
    seconds: float,
    on_window: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """One room, one speaker: the room alone, then `listeners` joining at 50/s, then a
    steady window (`on_window(seconds)` is called as it opens). CPU per packet counts
    the packets the listeners received."""
    speaker.ask("speaker")
    time.sleep(3)
    idle = Window(server, load, speaker)
    time.sleep(5)
    empty = idle.close()
    joins = load.ask("join", count=listeners, rate=PACKETS_PER_SECOND, probes=probes(listeners))
    # The joins' DTLS handshakes and first receiver reports settle before the window.
    time.sleep(3)
    window = Window(server, load, speaker)
    if on_window is not None:
        on_window(seconds)
    time.sleep(seconds)
    steady = window.close()
    packets = steady["packets"]
    empty_cpu = empty["node_cpu_percent"] / 100 * steady["seconds"]
    total_us = 1e6 * steady["node_cpu_seconds"] / packets if packets else None
    marginal_us = 1e6 * (steady["node_cpu_seconds"] - empty_cpu) / packets if packets else None
    heard = steady.pop("latency_ms")
    return {
        "listeners": listeners,
        "joined": joins["joined"],
        "us_per_packet": round(total_us, 1) if total_us else None,
        "us_per_packet_above_empty_room": round(marginal_us, 1) if marginal_us else None,
        "listeners_per_core": int(1e6 / total_us / PACKETS_PER_SECOND) if total_us else None,
        "empty_room_node_cpu_percent": empty["node_cpu_percent"],
        "empty_room_node_rss_mb": empty["node_rss_mb"],
        "rss_mb_per_100_listeners": round(
            100 * (steady["node_rss_mb"] - empty["node_rss_mb"]) / listeners, 1
        ),
        "latency_ms": {
            "p50": percentile(heard, 0.5),
            "p95": percentile(heard, 0.95),
            "samples": len(heard),
        },
        "answer_ms_p50": percentile(joins["answer_ms"], 0.5),
        "join_ms_p95": percentile(joins["join_ms"], 0.95),
        **steady,
    }


def write_results(
    out: Path, name: str, command: str, started: float, fields: dict[str, Any],
    pinned: bool = True,
) -> Path:
    """One benchmark's results file, `out/name`: what ran, when, on which machine, the
    figures, and how long it took."""
    result = {
        "command": command,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": machine(pinned),
        **fields,
        "duration_seconds": round(time.time() - started),
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def machine(pinned: bool = True) -> dict[str, Any]:
    """The machine a run was on; `pinned`: the node and load generator were pinned to
    CPUs (the media benchmarks), and which."""
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
        **({"node_pinned_to_cpu": NODE_CPU, "load_generator_pinned_to_cpus": sorted(load_cpus())}
           if pinned else {}),
    }
