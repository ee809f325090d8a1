"""Node metrics as CloudWatch embedded-metric-format (EMF) lines on stdout.

The awslogs driver ships stdout to CloudWatch Logs, which turns EMF lines into metrics
without any API call from the node. The lines are made by `aws-embedded-metrics`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass, fields
from typing import Any, Protocol

from aws_embedded_metrics.config import get_config
from aws_embedded_metrics.logger.metrics_logger_factory import create_metrics_logger

NAMESPACE = "Parlor/Media"
SERVICE = "parlor-media"

log = logging.getLogger("media_node.metrics")

# Outside Lambda the library would look for a CloudWatch agent on a socket; the task runs
# none, and its stdout already goes to CloudWatch Logs.
get_config().environment = "local"


@dataclass
class Counters:
    """Running totals since start; the reporter turns them into per-interval counts."""

    packets_in: int = 0
    packets_out: int = 0
    late_ticks: int = 0
    # Reactions a room did not pass on (over its cap); media events sent again after a
    # failed send, and given up after every retry failed (events.py).
    reactions_dropped: int = 0
    events_retried: int = 0
    events_dropped: int = 0

    def __add__(self, other: Counters) -> Counters:
        return Counters(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def __sub__(self, other: Counters) -> Counters:
        return Counters(*(a - b for a, b in zip(astuple(self), astuple(other), strict=True)))

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Counters:
        """From `asdict`'s shape (a worker's status); absent fields count 0."""
        return cls(**{f.name: int(raw.get(f.name, 0)) for f in fields(cls)})


class CpuMeter:
    """CPU use since the previous reading, in percent of one core, from a clock of CPU
    seconds: this process's own by default, a node's processes together in the
    supervisor (so a node of four busy workers reads up to 400)."""

    def __init__(self, clock: Callable[[], float] = time.process_time) -> None:
        self._clock = clock
        self._cpu = clock()
        self._wall = time.monotonic()

    def read(self) -> float:
        cpu, wall = self._clock(), time.monotonic()
        elapsed = wall - self._wall
        percent = 100.0 * (cpu - self._cpu) / elapsed if elapsed > 0 else 0.0
        self._cpu, self._wall = cpu, wall
        return round(percent, 1)


class Observed(Protocol):
    node_id: str

    @property
    def counters(self) -> Counters: ...

    def room_count(self) -> int: ...

    def participant_count(self) -> int: ...

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by the node's processes."""
        ...

    async def inbound_totals(self) -> tuple[int, int]:
        """(packets received, packets lost) over the node's live inbound streams."""
        ...

    async def outbound_totals(self) -> tuple[int, float]:
        """(receiver report blocks received, mean fraction lost in the latest ones)
        over the node's live outbound streams."""
        ...


class MetricsReporter:
    def __init__(self, node: Observed, interval: float, stack: str) -> None:
        self._node = node
        self._interval = interval
        # Two deployments in one account must not steer each other's autoscaling: the
        # stack is a dimension of every metric (the CDK stack's policies read it).
        self._stack = stack
        self._cpu = CpuMeter(node.cpu_seconds)
        self._last = Counters()
        self._last_inbound: tuple[int, int] | None = None
        self._last_reports = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.report()
            except Exception:
                log.exception("could not report metrics")

    async def report(self) -> None:
        node, counters = self._node, self._node.counters
        received, lost = await node.inbound_totals()
        # Loss over the interval; streams that ended in between make the totals drop,
        # so a negative difference only means "restart from here".
        if self._last_inbound is None:
            loss = 0.0
        else:
            got = received - self._last_inbound[0]
            missed = lost - self._last_inbound[1]
            loss = 100.0 * missed / (got + missed) if got > 0 and missed > 0 else 0.0
        self._last_inbound = (received, lost)
        reports, outbound_loss = await node.outbound_totals()
        # As above: streams that ended take their reports with them.
        new_reports = max(0, reports - self._last_reports)
        self._last_reports = reports
        interval = counters - self._last
        values = {
            "Rooms": (node.room_count(), "Count"),
            "Participants": (node.participant_count(), "Count"),
            "PacketsIn": (interval.packets_in, "Count"),
            "PacketsOut": (interval.packets_out, "Count"),
            "InboundLossPercent": (round(loss, 2), "Percent"),
            # What listeners say they lost of what the node sent them (RTCP receiver
            # reports of the fast path's streams).
            "OutboundLossPercent": (round(100.0 * outbound_loss, 2), "Percent"),
            "ReceiverReports": (new_reports, "Count"),
            "LateMixTicks": (interval.late_ticks, "Count"),
            "ReactionsDropped": (interval.reactions_dropped, "Count"),
            # Media events sent again after SQS refused them, and given up on.
            "EventsRetried": (interval.events_retried, "Count"),
            "EventsDropped": (interval.events_dropped, "Count"),
            "CpuPercent": (self._cpu.read(), "Percent"),
        }
        self._last = counters
        metrics = create_metrics_logger()
        metrics.set_namespace(NAMESPACE)
        identity = {"Service": SERVICE, "Stack": self._stack}
        metrics.set_dimensions(identity, {**identity, "NodeId": node.node_id},
                               use_default=False)
        for name, (value, unit) in values.items():
            metrics.put_metric(name, value, unit)
        await metrics.flush()
        sys.stdout.flush()
