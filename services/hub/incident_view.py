"""The live view's incident list: the open incidents with their severity, age and owner.

Read as any client reads them, from `GET /v1/incidents` with the demo's viewer key (the view is a
client of the API, like the responder's phone): the most severe first, then the oldest. Pure
parts (`open_incidents`, `incident_table`, with time as a parameter) apart from the fetch
(`IncidentFeed`), so the rendering is tested without a hub.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from rich import box
from rich.table import Table
from rich.text import Text

# CAP 1.2 severities, most severe first.
SEVERITIES = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")
_SEVERITY_STYLE = {
    "Extreme": "bold red",
    "Severe": "red",
    "Moderate": "yellow",
    "Minor": "",
    "Unknown": "dim",
}
_STATUS_STYLE = {"open": "bold", "acknowledged": "", "dispatched": "green"}
LIVE = ("open", "acknowledged", "dispatched")
SHOWN = 8  # rows: the view must fit a terminal beside the flow and the alarms


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenIncident:
    id: str
    site: str
    title: str
    severity: str
    status: str
    opened_at: datetime
    assignee: str | None
    confirmed: bool = False


def open_incidents(items: Iterable[dict[str, Any]]) -> list[OpenIncident]:
    """The live incidents of an API answer's `items`, most severe first, then oldest first."""
    found = [
        OpenIncident(
            id=item["id"],
            site=item["site"],
            title=item["title"],
            severity=item["severity"],
            status=item["status"],
            opened_at=datetime.fromisoformat(item["openedAt"]),
            assignee=item.get("assignee"),
            confirmed=bool(item.get("confirmed")),
        )
        for item in items
        if item["status"] in LIVE
    ]
    rank = {severity: n for n, severity in enumerate(SEVERITIES)}
    return sorted(found, key=lambda i: (rank.get(i.severity, len(SEVERITIES)), i.opened_at, i.id))


def age(seconds: float) -> str:
    """`45s`, `12m 05s`, `3h 20m`, `2d 4h`: short enough for a narrow column."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def incident_table(incidents: Sequence[OpenIncident], now: datetime, *, shown: int = SHOWN) -> Table:
    """The open incidents, one row each; an unowned one says so in bold."""
    more = len(incidents) - shown
    table = Table(
        title=f"Open incidents ({len(incidents)})",
        title_justify="left",
        caption=f"and {more} more: GET /v1/incidents" if more > 0 else None,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("severity", no_wrap=True)
    table.add_column("incident", overflow="ellipsis", max_width=36, no_wrap=True)
    table.add_column("site", overflow="ellipsis", max_width=20, no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("age", justify="right", no_wrap=True)
    table.add_column("owner", overflow="ellipsis", max_width=24, no_wrap=True)
    for incident in incidents[:shown]:
        severity = incident.severity + (" ✓" if incident.confirmed else "")
        table.add_row(
            Text(severity, style=_SEVERITY_STYLE.get(incident.severity, "")),
            incident.title,
            incident.site,
            Text(incident.status, style=_STATUS_STYLE.get(incident.status, "")),
            age((now - incident.opened_at).total_seconds()),
            Text(incident.assignee) if incident.assignee else Text("nobody", style="bold yellow"),
        )
    if not incidents:
        table.add_row(Text("-", style="dim"), Text("no open incident", style="dim"), "", "", "", "")
    return table


class IncidentFeed:
    """Reads the open incidents from the API with a key that may read them."""

    def __init__(self, base_url: str, key: str, *, timeout_s: float = 2.0) -> None:
        query = "&".join(f"status={s}" for s in LIVE)
        self._url = f"{base_url.rstrip('/')}/v1/incidents?{query}&limit=100"
        self._headers = {"Authorization": f"Bearer {key}", "Accept-Language": "en"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._last: list[OpenIncident] = []

    async def fetch(self) -> list[OpenIncident]:
        """The open incidents now; the last ones read when the hub does not answer in time."""
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as http,
                http.get(self._url, headers=self._headers) as response,
            ):
                if response.status == 200:
                    self._last = open_incidents((await response.json())["items"])
        except (aiohttp.ClientError, TimeoutError):
            pass  # the view keeps showing the last list; the hub's logs say why
        return self._last
