"""The live view's open incidents: severity, age and owner, the most severe and oldest first,
from the items `GET /v1/incidents` answers."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console

from services.hub.dashboard import FlowRates, FlowSnapshot, render
from services.hub.incident_view import age, incident_table, open_incidents

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


def item(incident: str, severity: str, status: str, opened_s_ago: float, **extra: Any) -> dict[str, Any]:
    return {
        "id": incident,
        "site": "ulsan-refinery",
        "type": "gas_release",
        "title": f"Gas release in {incident}",
        "severity": severity,
        "status": status,
        "openedAt": (NOW - timedelta(seconds=opened_s_ago)).isoformat().replace("+00:00", "Z"),
        "assignee": None,
        "confirmed": False,
        **extra,
    }


def text(renderable: object) -> str:
    console = Console(file=io.StringIO(), width=140, color_system=None)
    console.print(renderable)
    out = console.file.getvalue()
    assert isinstance(out, str)
    return out


def row(rendered: str, incident: str) -> list[str]:
    line = next(line for line in rendered.splitlines() if f"Gas release in {incident}" in line)
    return re.split(r"\s{2,}", line.strip())


ITEMS = [
    item("fcc-2", "Moderate", "open", 45),
    item("cdu-1", "Extreme", "acknowledged", 725, assignee="demo-responder", confirmed=True),
    item("tank-3", "Extreme", "dispatched", 3 * 3600 + 20 * 60, assignee="kim.responder"),
    item("old", "Severe", "resolved", 60),
]


def test_the_open_ones_come_most_severe_then_oldest_first() -> None:
    listed = open_incidents(ITEMS)

    assert [i.title for i in listed] == [
        "Gas release in tank-3",
        "Gas release in cdu-1",
        "Gas release in fcc-2",
    ]


def test_each_row_shows_severity_status_age_and_owner() -> None:
    rendered = text(incident_table(open_incidents(ITEMS), NOW))

    assert "Open incidents (3)" in rendered
    assert row(rendered, "cdu-1") == [
        "Extreme ✓",
        "Gas release in cdu-1",
        "ulsan-refinery",
        "acknowledged",
        "12m 05s",
        "demo-responder",
    ]
    assert row(rendered, "tank-3")[4:] == ["3h 20m", "kim.responder"]
    assert row(rendered, "fcc-2")[0] == "Moderate" and row(rendered, "fcc-2")[4:] == ["45s", "nobody"]
    assert "old" not in rendered  # resolved: not open


def test_a_long_list_shows_its_first_rows_and_says_how_many_more() -> None:
    many = [item(f"z{n:02d}", "Minor", "open", n) for n in range(12)]

    rendered = text(incident_table(open_incidents(many), NOW, shown=5))

    assert "Open incidents (12)" in rendered and "and 7 more" in rendered
    assert sum("Gas release in z" in line for line in rendered.splitlines()) == 5
    assert "z11" in rendered and "z00" not in rendered  # the oldest first


def test_no_open_incident_says_so() -> None:
    assert "no open incident" in text(incident_table([], NOW))


def test_the_ages_read_short() -> None:
    assert [age(s) for s in (-3, 0, 59, 60, 3599, 3600, 86_399, 90_000)] == [
        "0s",
        "0s",
        "59s",
        "1m 00s",
        "59m 59s",
        "1h 00m",
        "23h 59m",
        "1d 1h",
    ]


def test_the_whole_view_lists_the_incidents_when_given_them() -> None:
    snap, flow = FlowSnapshot(), FlowRates()

    with_list = text(render({"HTTP": "x"}, snap, flow, incidents=(open_incidents(ITEMS), NOW)))
    without = text(render({"HTTP": "x"}, snap, flow))

    assert "Open incidents (3)" in with_list and "demo-responder" in with_list
    assert "Open incidents" not in without
