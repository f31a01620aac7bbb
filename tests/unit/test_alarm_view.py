"""The live view's alarm summary: per site, the active alarms by priority, the unacknowledged and
hidden ones, the flood state and the alarm load next to its ISA-18.2 targets, read from the
alarm service's gauges (the names of services/alarms/live.py, in a registry of the test's own)."""

from __future__ import annotations

import asyncio
import io
import re

from prometheus_client import CollectorRegistry, Gauge
from rich.console import Console

from services.hub.alarm_view import SiteAlarms, alarm_table, site_alarms
from services.hub.dashboard import FlowRates, FlowSnapshot, render, run_dashboard

INFO = {"HTTP": "http://127.0.0.1:8080"}
SITE = ["tenant", "site"]


class _Gauges:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.active = Gauge("safetyhub_alarms_site_active", "", [*SITE, "priority"], registry=r)
        self.unacked = Gauge("safetyhub_alarms_site_unacknowledged", "", SITE, registry=r)
        self.hidden = Gauge("safetyhub_alarms_site_hidden", "", SITE, registry=r)
        self.last_10m = Gauge("safetyhub_alarms_site_activations_last_10m", "", SITE, registry=r)
        self.last_1h = Gauge("safetyhub_alarms_site_activations_last_1h", "", SITE, registry=r)
        self.chattering = Gauge("safetyhub_alarms_site_chattering_last_1h", "", SITE, registry=r)
        self.in_flood = Gauge("safetyhub_alarms_site_in_flood", "", SITE, registry=r)


def _refinery_in_a_flood(g: _Gauges) -> None:
    site = ("ulsan-refining", "ulsan-refinery")
    g.active.labels(*site, "emergency").set(1)
    g.active.labels(*site, "high").set(3)
    g.active.labels(*site, "low").set(14)
    g.unacked.labels(*site).set(9)
    g.hidden.labels(*site).set(2)
    g.last_10m.labels(*site).set(12)
    g.last_1h.labels(*site).set(9)
    g.chattering.labels(*site).set(1)
    g.in_flood.labels(*site).set(1)
    quiet = ("mipo-petrochem", "mipo-aromatics")
    g.last_1h.labels(*quiet).set(1)


def _text(renderable: object, *, colour: bool = False) -> str:
    console = Console(file=io.StringIO(), width=160, color_system="standard" if colour else None)
    console.print(renderable)
    out = console.file.getvalue()
    assert isinstance(out, str)
    return out


def _cells(text: str, site: str) -> list[str]:
    """The cells of the row that starts with `site` (columns apart by two spaces or more)."""
    line = next(line for line in text.splitlines() if line.strip().startswith(site + " "))
    return re.split(r"\s{2,}", line.strip())


def test_the_gauges_read_as_one_row_per_site_and_a_missing_figure_reads_zero() -> None:
    g = _Gauges()
    _refinery_in_a_flood(g)
    assert site_alarms(g.registry.collect()) == [
        SiteAlarms(tenant="mipo-petrochem", site="mipo-aromatics", last_1h=1.0),
        SiteAlarms(
            tenant="ulsan-refining",
            site="ulsan-refinery",
            active={"emergency": 1.0, "high": 3.0, "low": 14.0},
            unacknowledged=9.0,
            hidden=2.0,
            last_10m=12.0,
            last_1h=9.0,
            chattering=1.0,
            in_flood=True,
        ),
    ]
    assert site_alarms(CollectorRegistry().collect()) == []


def test_the_table_shows_each_site_by_priority_with_its_flood_and_its_load_against_the_targets() -> None:
    g = _Gauges()
    _refinery_in_a_flood(g)
    text = _text(alarm_table(site_alarms(g.registry.collect())))
    # The targets an operator compares with: ~1 (at most 2) in 10 minutes, ~6 (12) an hour, none chattering.
    caption = " ".join(text.split())
    assert "10m ~1 (≤2), 1h ~6 (≤12); chat(tering in the last hour) 0" in caption
    assert _cells(text, "site") == [
        "site",
        "E",
        "H",
        "M",
        "L",
        "unack",
        "hidden",
        "10m",
        "1h",
        "chat",
        "flood",
    ]
    assert _cells(text, "ulsan-refinery")[1:] == ["1", "3", "0", "14", "9", "2", "12", "9", "1", "FLOOD"]
    assert _cells(text, "mipo-aromatics")[1:] == ["0", "0", "0", "0", "0", "0", "0", "1", "0", "-"]


def test_a_figure_past_its_target_stands_out() -> None:
    site = [SiteAlarms(tenant="t", site="s", last_10m=12.0, last_1h=9.0, chattering=0.0)]
    text = _text(alarm_table(site), colour=True)

    def styled(style: str, figure: str) -> bool:
        return re.search(rf"\x1b\[{style}m\s*{figure}\s*\x1b", text) is not None

    red, yellow = "1;31", "33"
    assert styled(red, "12")  # over the most manageable 2 in 10 minutes
    assert styled(yellow, "9")  # over ~6 an hour, within 12
    assert not styled(red, "0") and not styled(yellow, "0")  # no chattering: as it should be


def test_two_tenants_with_the_same_site_id_are_told_apart() -> None:
    sites = [SiteAlarms(tenant="a", site="plant-1"), SiteAlarms(tenant="b", site="plant-1", last_1h=3.0)]
    text = _text(alarm_table(sites))
    assert _cells(text, "a/plant-1")[8] == "0" and _cells(text, "b/plant-1")[8] == "3"


def test_the_whole_view_has_the_alarm_summary_only_once_alarms_are_known() -> None:
    assert "ISA-18.2" not in _text(render(INFO, FlowSnapshot(), FlowRates()))
    sites = [SiteAlarms(tenant="t", site="ulsan-refinery", in_flood=True)]
    text = _text(render(INFO, FlowSnapshot(), FlowRates(), alarms=sites))
    assert "ISA-18.2" in text and "FLOOD" in text


async def test_the_running_view_shows_a_flood_as_soon_as_the_gauges_do() -> None:
    g = _Gauges()
    g.last_1h.labels("ulsan-refining", "ulsan-refinery").set(1)
    out = io.StringIO()
    console = Console(file=out, width=160, height=200, color_system=None, force_terminal=True)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_dashboard(INFO, stop, console=console, refresh_s=0.01, registry=g.registry)
    )

    async def shows(figure: str) -> None:
        deadline = asyncio.get_running_loop().time() + 5.0
        while figure not in out.getvalue():
            assert not task.done(), "the view stopped before it was told to"
            assert asyncio.get_running_loop().time() < deadline, f"the view never showed {figure}"
            await asyncio.sleep(0.01)

    await shows("ulsan-refinery")
    assert "FLOOD" not in out.getvalue()
    g.in_flood.labels("ulsan-refining", "ulsan-refinery").set(1)
    await shows("FLOOD")
    stop.set()
    await asyncio.wait_for(task, timeout=2.0)
