"""The live view's pure parts: reading metrics, rates between two reads, and the renderable."""

from __future__ import annotations

import asyncio
import io
import re

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from rich.console import Console

from services.hub.dashboard import FlowRates, FlowSnapshot, quantile, rates, render, run_dashboard, snapshot

INFO = {"HTTP": "http://127.0.0.1:8080", "NATS": "nats://127.0.0.1:4222", "Keys": "ulsan-refining: k-123"}


class _Metrics:
    """The hub's flow metrics, registered in a registry of the test's own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter("safetyhub_ingest_received", "", registry=r)
        self.accepted = Counter("safetyhub_ingest_accepted", "", registry=r)
        self.ingest_duplicates = Counter("safetyhub_ingest_duplicates", "", registry=r)
        self.rejected = Counter("safetyhub_ingest_rejected", "", ["reason"], registry=r)
        self.stored = Counter("safetyhub_store_stored", "", registry=r)
        self.store_duplicates = Counter("safetyhub_store_duplicates", "", registry=r)
        self.deadletter = Counter("safetyhub_deadletter", "", ["consumer", "reason"], registry=r)
        self.lag = Gauge("safetyhub_consumer_lag", "", ["consumer"], registry=r)
        self.batch = Histogram("safetyhub_store_batch_seconds", "", buckets=(0.01, 0.1, 1.0), registry=r)


def _text(renderable: object) -> str:
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(renderable)
    out = console.file.getvalue()
    assert isinstance(out, str)
    return out


def test_an_empty_registry_reads_as_zeros() -> None:
    snap = snapshot(CollectorRegistry())
    assert snap == FlowSnapshot()
    assert rates(snap, snap, 1.0) == FlowRates()


def test_snapshot_reads_every_flow_metric() -> None:
    m = _Metrics()
    m.received.inc(100)
    m.accepted.inc(97)
    m.rejected.labels("unknown_device").inc(2)
    m.rejected.labels("future_time").inc(1)
    m.stored.inc(90)
    m.store_duplicates.inc(4)
    m.ingest_duplicates.inc(2)
    m.deadletter.labels("store", "undecodable").inc(3)
    m.lag.labels("store").set(12)
    m.lag.labels("alarms").set(5)
    m.batch.observe(0.05)
    snap = snapshot(m.registry)
    assert (snap.received, snap.accepted, snap.stored) == (100, 97, 90)
    assert (snap.ingest_duplicates, snap.store_duplicates, snap.duplicates) == (2, 4, 6)
    assert snap.in_flight == 1
    assert snap.rejected == {"unknown_device": 2, "future_time": 1}
    assert snap.deadlettered == {("store", "undecodable"): 3}
    assert snap.lag == {"store": 12, "alarms": 5}
    assert snap.batch_buckets == ((0.01, 0), (0.1, 1), (1.0, 1), (float("inf"), 1))


def test_rates_are_per_second_over_the_window() -> None:
    m = _Metrics()
    m.received.inc(10)
    m.batch.observe(0.5)  # before the window: must not count in its p50
    prev = snapshot(m.registry)
    m.received.inc(300)
    m.accepted.inc(240)
    m.stored.inc(120)
    for _ in range(3):
        m.batch.observe(0.05)
    flow = rates(prev, snapshot(m.registry), 2.0)
    assert flow.received_per_s == 150
    assert flow.accepted_per_s == 120
    assert flow.stored_per_s == 60
    assert flow.batch_p50_s == pytest.approx(0.01 + 0.09 * 0.5)


def test_rates_without_elapsed_time_or_after_a_restart_never_go_negative() -> None:
    prev = FlowSnapshot(received=500.0, stored=400.0)
    cur = FlowSnapshot(received=20.0, stored=10.0)
    assert rates(prev, cur, 0.0).received_per_s == 0
    after_restart = rates(prev, cur, 1.0)
    assert after_restart.received_per_s == 20
    assert after_restart.stored_per_s == 10


def test_quantile_interpolates_within_a_bucket_and_stops_at_the_last_finite_bound() -> None:
    assert quantile((), 0.5) is None
    assert quantile(((0.1, 0.0), (float("inf"), 0.0)), 0.5) is None
    assert quantile(((0.1, 2.0), (1.0, 4.0), (float("inf"), 4.0)), 0.5) == pytest.approx(0.1)
    assert quantile(((0.1, 0.0), (1.0, 4.0), (float("inf"), 4.0)), 0.5) == pytest.approx(0.55)
    assert quantile(((0.1, 0.0), (1.0, 0.0), (float("inf"), 4.0)), 0.5) == 1.0


def test_the_view_builds_from_a_fresh_registry() -> None:
    snap = snapshot(CollectorRegistry())
    text = _text(render(INFO, snap, rates(snap, snap, 1.0)))
    for key, value in INFO.items():
        assert key in text
        assert value in text
    assert "Received" in text
    assert "Ctrl-C to stop" in text


def test_the_view_shows_figures_and_breakdowns() -> None:
    snap = FlowSnapshot(
        received=1234.0,
        accepted=1200.0,
        rejected={"unknown_device": 34.0},
        stored=1100.0,
        deadlettered={("store", "undecodable"): 2.0},
        lag={"store": 7.0},
    )
    text = _text(render(INFO, snap, FlowRates(received_per_s=12.5, batch_p50_s=0.0123)))
    assert "1,234" in text
    assert "12.5" in text
    assert "unknown_device 34" in text
    assert "store/undecodable 2" in text
    assert "p50 batch 12.3 ms" in text


def _row(text: str, label: str) -> list[str]:
    """The cells of the table row that starts with `label`."""
    line = next(line for line in text.splitlines() if re.match(rf"\W*{label}\b", line.strip("│┃ ")))
    return [cell.strip() for cell in re.split(r"[│┃]", line) if cell.strip()]


def test_the_totals_add_up_when_the_stream_drops_a_reposted_id() -> None:
    # A reposted id: accepted twice, stored once, the stream dropped the second message.
    snap = FlowSnapshot(accepted=14_308.0, stored=14_307.0, ingest_duplicates=1.0)

    text = _text(render(INFO, snap, FlowRates()))

    assert _row(text, "Accepted")[:2] == ["Accepted", "14,308"]
    assert _row(text, "Stored")[:2] == ["Stored", "14,307"]
    assert _row(text, "Duplicates")[:2] == ["Duplicates", "1"]
    assert _row(text, "In flight")[:2] == ["In flight", "0"]


def test_in_flight_is_what_is_neither_stored_nor_a_duplicate() -> None:
    snap = FlowSnapshot(accepted=1_000.0, stored=900.0, ingest_duplicates=30.0, store_duplicates=20.0)

    text = _text(render(INFO, snap, FlowRates()))

    assert snap.in_flight == 50
    assert _row(text, "Duplicates")[:3] == ["Duplicates", "50", "at ingest 30, at the store 20"]
    assert _row(text, "In flight")[:2] == ["In flight", "50"]
    # After a restart the store may count redeliveries that this process never accepted.
    assert FlowSnapshot(accepted=5.0, stored=5.0, store_duplicates=3.0).in_flight == 0


async def test_run_dashboard_shows_new_figures_while_running_and_stops() -> None:
    m = _Metrics()
    m.received.inc(42)
    out = io.StringIO()
    # A terminal console: Live redraws on every refresh (on a plain file it prints once, at the end).
    console = Console(file=out, width=120, color_system=None, force_terminal=True)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_dashboard(INFO, stop, console=console, refresh_s=0.01, registry=m.registry)
    )

    async def shows(figure: str) -> None:
        deadline = asyncio.get_running_loop().time() + 5.0
        while figure not in out.getvalue():
            assert not task.done(), "the view stopped before it was told to"
            assert asyncio.get_running_loop().time() < deadline, f"the view never showed {figure}"
            await asyncio.sleep(0.01)

    await shows("42")
    m.received.inc(4_200)  # after the first drawing: only a refresh can show it
    await shows("4,242")
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, timeout=2.0)
