"""The demo's live terminal view: where the hub listens and how readings flow through it.

Figures come from the process's own Prometheus metrics, so the view shows exactly what a scrape
would, and they add up: every accepted observation is stored, a duplicate (dropped by the stream
or by the store) or in flight. The pure parts (`snapshot`, `rates`, `render`) are separate from
the refresh loop so they can be tested without a terminal. Below the flow, the alarm summary per
site (alarm_view.py: active alarms by priority, the flood state and the alarm load against its
ISA-18.2 targets), the open incidents with severity, age and owner (incident_view.py, read from
the API), the cameras with their state, analysis rate and newest detection (camera_view.py), then
each running service shows the rows its declaration lists (`Service.panel`): a new service
appears without an edit here.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from services.common.bus.consumer import CONSUMER_LAG
from services.common.bus.deadletter import DEADLETTERED
from services.common.kernel import Service
from services.hub.alarm_view import SiteAlarms, alarm_table, site_alarms
from services.hub.camera_view import CameraFeed, CameraStatus, camera_metrics, camera_statuses, camera_table
from services.hub.incident_view import OpenIncident, incident_table
from services.hub.registry import REGISTRY as SERVICES
from services.ingest import metrics as ingest
from services.store import metrics as store


def _exposed(metric: MetricWrapperBase, suffix: str = "") -> str:
    """The name of `metric`'s samples as a scrape shows them (a counter's end in `_total`)."""
    (family,) = metric.describe()
    return f"{family.name}{suffix}"


# From the metrics themselves, so a renamed metric cannot leave the view reading zeros.
_RECEIVED = _exposed(ingest.RECEIVED, "_total")
_ACCEPTED = _exposed(ingest.ACCEPTED, "_total")
_REJECTED = _exposed(ingest.REJECTED, "_total")
_INGEST_DUPLICATES = _exposed(ingest.DUPLICATES, "_total")
_STORED = _exposed(store.STORED, "_total")
_STORE_DUPLICATES = _exposed(store.DUPLICATES, "_total")
_DEADLETTER = _exposed(DEADLETTERED, "_total")
_LAG = _exposed(CONSUMER_LAG)
_BATCH_BUCKET = _exposed(store.BATCH_SECONDS, "_bucket")
_PLAIN = (_RECEIVED, _ACCEPTED, _INGEST_DUPLICATES, _STORED, _STORE_DUPLICATES)


# The sample a panel row totals, by the metric's type: a counter's `_total`, a histogram's count.
_SUFFIX = {"counter": "_total", "histogram": "_count", "summary": "_count"}


def _sample_name(metric: MetricWrapperBase) -> str:
    (family,) = metric.describe()
    return f"{family.name}{_SUFFIX.get(family.type, '')}"


# The open incidents as read, and when (their ages are counted to then).
Listed = tuple[Sequence[OpenIncident], datetime]


@dataclass(frozen=True, slots=True)
class PanelLine:
    """One row of a service's panel as read now: its total and, when the row asks, a breakdown."""

    service: str
    label: str
    total: float = 0.0
    breakdown: Mapping[str, float] = field(default_factory=dict)


def panel_lines(families: Iterable[Metric], services: Sequence[Service[Any]]) -> list[PanelLine]:
    """The rows the services' panels declare, read from metric families (a missing metric reads 0)."""
    wanted: dict[str, list[int]] = defaultdict(list)
    rows = [(service.name, row) for service in services for row in service.panel]
    for index, (_, row) in enumerate(rows):
        wanted[_sample_name(row.metric)].append(index)
    totals = [0.0] * len(rows)
    breakdowns: list[dict[str, float]] = [defaultdict(float) for _ in rows]
    for metric in families:
        for sample in metric.samples:
            for index in wanted.get(sample.name, ()):
                totals[index] += sample.value
                by = rows[index][1].by
                if by is not None:
                    breakdowns[index][sample.labels.get(by, "")] += sample.value
    return [PanelLine(name, row.label, totals[i], dict(breakdowns[i])) for i, (name, row) in enumerate(rows)]


@dataclass(frozen=True, kw_only=True)
class FlowSnapshot:
    """The flow metrics at one moment. Counters are totals since start; a missing metric reads 0."""

    received: float = 0.0
    accepted: float = 0.0
    rejected: Mapping[str, float] = field(default_factory=dict)  # by reason
    stored: float = 0.0
    # Accepted observations not stored again: dropped at ingest (the stream had their message, or
    # the id repeated within one request) or by the store (a row with the id exists).
    ingest_duplicates: float = 0.0
    store_duplicates: float = 0.0
    deadlettered: Mapping[tuple[str, str], float] = field(default_factory=dict)  # by (consumer, reason)
    lag: Mapping[str, float] = field(default_factory=dict)  # messages waiting, by consumer
    # Store batch durations: (upper bound in s, cumulative count), ascending, ending at +Inf.
    batch_buckets: tuple[tuple[float, float], ...] = ()

    @property
    def duplicates(self) -> float:
        return self.ingest_duplicates + self.store_duplicates

    @property
    def in_flight(self) -> float:
        """Accepted, and neither stored nor a duplicate yet: on the bus or in a store batch."""
        # Never negative: after a restart the store may count redeliveries ingest never saw.
        return max(0.0, self.accepted - self.stored - self.duplicates)


@dataclass(frozen=True, kw_only=True)
class FlowRates:
    """What changed between two snapshots, per second; `batch_p50_s` is None with no batch between."""

    received_per_s: float = 0.0
    accepted_per_s: float = 0.0
    stored_per_s: float = 0.0
    batch_p50_s: float | None = None


def snapshot(registry: CollectorRegistry) -> FlowSnapshot:
    """Reads the flow metrics from `registry` (the process's `REGISTRY` in the hub)."""
    return snapshot_of(registry.collect())


def snapshot_of(families: Iterable[Metric]) -> FlowSnapshot:
    """Reads the flow metrics from metric families: a registry's, or a parsed `/metrics` scrape."""
    plain: dict[str, float] = defaultdict(float)
    rejected: dict[str, float] = defaultdict(float)
    deadlettered: dict[tuple[str, str], float] = defaultdict(float)
    lag: dict[str, float] = defaultdict(float)
    buckets: dict[float, float] = defaultdict(float)
    for metric in families:
        for sample in metric.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            # Sums over any other labels, so a label added later does not break the view.
            if name in _PLAIN:
                plain[name] += value
            elif name == _REJECTED:
                rejected[labels.get("reason", "")] += value
            elif name == _DEADLETTER:
                deadlettered[(labels.get("consumer", ""), labels.get("reason", ""))] += value
            elif name == _LAG:
                lag[labels.get("consumer", "")] += value
            elif name == _BATCH_BUCKET:
                buckets[float(labels["le"])] += value
    return FlowSnapshot(
        received=plain[_RECEIVED],
        accepted=plain[_ACCEPTED],
        rejected=dict(rejected),
        stored=plain[_STORED],
        ingest_duplicates=plain[_INGEST_DUPLICATES],
        store_duplicates=plain[_STORE_DUPLICATES],
        deadlettered=dict(deadlettered),
        lag=dict(lag),
        batch_buckets=tuple(sorted(buckets.items())),
    )


def rates(prev: FlowSnapshot, cur: FlowSnapshot, dt: float) -> FlowRates:
    """Per-second rates over the `dt` seconds between `prev` and `cur`; zeros if `dt` is not positive."""
    if dt <= 0:
        return FlowRates(batch_p50_s=quantile(cur.batch_buckets, 0.5))

    def per_s(before: float, after: float) -> float:
        # A counter only falls when its process restarted: count from zero then, never negative.
        return (after - before if after >= before else after) / dt

    earlier = dict(prev.batch_buckets)
    window = tuple((le, max(0.0, count - earlier.get(le, 0.0))) for le, count in cur.batch_buckets)
    return FlowRates(
        received_per_s=per_s(prev.received, cur.received),
        accepted_per_s=per_s(prev.accepted, cur.accepted),
        stored_per_s=per_s(prev.stored, cur.stored),
        batch_p50_s=quantile(window, 0.5),
    )


def quantile(buckets: tuple[tuple[float, float], ...], q: float) -> float | None:
    """The q-quantile of cumulative histogram buckets, interpolated as PromQL's histogram_quantile."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):  # past the last finite bound: that bound is all we know
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def render(
    info: Mapping[str, str],
    snap: FlowSnapshot,
    flow: FlowRates,
    panels: Sequence[PanelLine] = (),
    alarms: Sequence[SiteAlarms] = (),
    *,
    incidents: Listed | None = None,
    cameras: Sequence[CameraStatus] = (),
) -> RenderableType:
    """The whole view: where things are, the flow table, the alarms per site, the open incidents
    (as read at the moment given), the cameras, the services' panels, and how to stop."""
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold cyan", no_wrap=True)
    header.add_column(overflow="fold")
    for key, value in info.items():
        header.add_row(key, value)

    table = Table(title="Flow", title_justify="left", expand=False)
    table.add_column("")
    table.add_column("total", justify="right")
    table.add_column("per second", justify="right")
    table.add_column("detail")
    p50 = "" if flow.batch_p50_s is None else f"p50 batch {flow.batch_p50_s * 1000:.1f} ms"
    rejected = sum(snap.rejected.values())
    deadlettered = sum(snap.deadlettered.values())
    dead_detail = {f"{consumer}/{reason}": n for (consumer, reason), n in snap.deadlettered.items()}
    table.add_row("Received", _count(snap.received), _rate(flow.received_per_s), "")
    table.add_row("Accepted", _count(snap.accepted), _rate(flow.accepted_per_s), "")
    table.add_row(_warn("Rejected", rejected), _count(rejected), "", _breakdown(snap.rejected))
    table.add_row("Stored", _count(snap.stored), _rate(flow.stored_per_s), p50)
    duplicates = {"at ingest": snap.ingest_duplicates, "at the store": snap.store_duplicates}
    table.add_row("Duplicates", _count(snap.duplicates), "", _breakdown(duplicates))
    table.add_row("In flight", _count(snap.in_flight), "", "accepted - stored - duplicates")
    table.add_row(_warn("Dead-lettered", deadlettered), _count(deadlettered), "", _breakdown(dead_detail))
    table.add_row("Consumer lag", _count(sum(snap.lag.values())), "", _breakdown(snap.lag))

    parts: list[RenderableType] = [
        Panel(header, title="safetyhub", title_align="left", border_style="cyan"),
        table,
    ]
    if alarms:  # above the services' panels: what an operator looks at first
        parts.append(alarm_table(alarms))
    if incidents is not None:
        parts.append(incident_table(*incidents))
    if cameras:
        parts.append(camera_table(cameras, incidents[1] if incidents is not None else datetime.now(UTC)))
    if panels:
        services = Table(title="Services", title_justify="left", expand=False)
        for column in ("service", "", "total", "detail"):
            services.add_column(column, justify="right" if column == "total" else "left")
        shown = ""
        for line in panels:
            services.add_row(
                line.service if line.service != shown else "",
                line.label,
                _count(line.total),
                _breakdown(line.breakdown),
            )
            shown = line.service
        parts.append(services)
    parts.append(Text("Ctrl-C to stop", style="dim"))
    return Group(*parts)


async def run_dashboard(
    info: Mapping[str, str],
    stop: asyncio.Event,
    *,
    console: Console | None = None,
    refresh_s: float = 1.0,
    registry: CollectorRegistry = REGISTRY,
    services: Sequence[Service[Any]] | None = None,
    incidents: Callable[[], Awaitable[Sequence[OpenIncident]]] | None = None,
    cameras: CameraFeed | None = None,
) -> None:
    """Shows the live view on `console` (the terminal by default) until `stop` is set; the
    panels of `services` (every registered service by default) below the flow, the open
    incidents `incidents` reads (none without it) and the cameras `cameras` reads (none
    without it)."""
    shown = SERVICES.services if services is None else services

    async def view(cur: FlowSnapshot, flow: FlowRates) -> RenderableType:
        families = list(registry.collect())
        listed = (await incidents(), datetime.now(UTC)) if incidents is not None else None
        statuses: list[CameraStatus] = []
        if cameras is not None:
            statuses = camera_statuses(cameras.cameras, camera_metrics(families), await cameras.fetch())
        return render(
            info,
            cur,
            flow,
            panel_lines(families, shown),
            site_alarms(families),
            incidents=listed,
            cameras=statuses,
        )

    loop = asyncio.get_running_loop()
    prev, prev_at = snapshot(registry), loop.time()
    first = await view(prev, rates(prev, prev, 0.0))
    with Live(first, console=console or Console(), auto_refresh=False) as live:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=refresh_s)
            cur, at = snapshot(registry), loop.time()
            live.update(await view(cur, rates(prev, cur, at - prev_at)), refresh=True)
            prev, prev_at = cur, at


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _rate(value: float) -> str:
    return f"{value:,.1f}"


def _warn(label: str, value: float) -> Text:
    return Text(label, style="bold red" if value > 0 else "")


def _breakdown(values: Mapping[str, float]) -> str:
    return ", ".join(f"{key or '-'} {_count(n)}" for key, n in sorted(values.items()) if n)
