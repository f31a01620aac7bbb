"""The live view's alarm summary: per site, what an operator's alarm list and an ISA-18.2 review
would show now, read from the alarm service's gauges (services/alarms/live.py).

Each load figure stands next to its target (ISA-18.2 / EEMUA 191, per operator position, from
services/alarms/domain/kpis.py) and is coloured by where it stands: plain when acceptable, yellow
when manageable, red when over. Pure: `site_alarms` reads metric families (a registry's or a
parsed scrape), `alarm_table` builds the renderable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from rich import box
from rich.table import Table
from rich.text import Text

from services.alarms import live
from services.alarms.domain.kpis import CHATTERING, PER_10_MINUTES, PER_HOUR, Status, Target
from services.alarms.domain.model import Priority


def _name(metric: MetricWrapperBase) -> str:
    (family,) = metric.describe()
    return family.name


# From the gauges themselves, so a renamed gauge cannot leave the view reading zeros.
_ACTIVE = _name(live.SITE_ACTIVE)
_PLAIN = {
    _name(live.SITE_UNACKNOWLEDGED): "unacknowledged",
    _name(live.SITE_HIDDEN): "hidden",
    _name(live.SITE_ACTIVATIONS_10M): "last_10m",
    _name(live.SITE_ACTIVATIONS_1H): "last_1h",
    _name(live.SITE_CHATTERING): "chattering",
    _name(live.SITE_IN_FLOOD): "in_flood",
}
# Most urgent first, as an operator's alarm list sorts them.
PRIORITIES = (Priority.EMERGENCY, Priority.HIGH, Priority.MEDIUM, Priority.LOW)
_STYLE = {Status.ACCEPTABLE: "", Status.MANAGEABLE: "yellow", Status.OVER: "bold red"}


@dataclass(frozen=True, kw_only=True)
class SiteAlarms:
    """One site's alarm figures as the gauges read now (a missing gauge reads 0)."""

    tenant: str
    site: str
    active: Mapping[str, float] = field(default_factory=dict)  # by priority
    unacknowledged: float = 0.0
    hidden: float = 0.0
    last_10m: float = 0.0
    last_1h: float = 0.0
    chattering: float = 0.0
    in_flood: bool = False


def site_alarms(families: Iterable[Metric]) -> list[SiteAlarms]:
    """Every site the gauges name, by tenant then site."""
    figures: dict[tuple[str, str], dict[str, float]] = {}
    active: dict[tuple[str, str], dict[str, float]] = {}
    for metric in families:
        for sample in metric.samples:
            field_name = _PLAIN.get(sample.name)
            if field_name is None and sample.name != _ACTIVE:
                continue
            key = (sample.labels.get("tenant", ""), sample.labels.get("site", ""))
            site = figures.setdefault(key, {})
            if field_name is not None:
                site[field_name] = sample.value
            else:
                by = active.setdefault(key, {})
                priority = sample.labels.get("priority", "")
                by[priority] = by.get(priority, 0.0) + sample.value
    return [
        SiteAlarms(
            tenant=tenant,
            site=site,
            active=active.get((tenant, site), {}),
            unacknowledged=values.get("unacknowledged", 0.0),
            hidden=values.get("hidden", 0.0),
            last_10m=values.get("last_10m", 0.0),
            last_1h=values.get("last_1h", 0.0),
            chattering=values.get("chattering", 0.0),
            in_flood=values.get("in_flood", 0.0) > 0,
        )
        for (tenant, site), values in sorted(figures.items())
    ]


def alarm_table(sites: Sequence[SiteAlarms]) -> Table:
    """The alarm summary: one row per site, narrow enough for an 80-column terminal."""
    caption = (
        "E H M L active by priority; unack awaiting acknowledgement; hidden shelved, suppressed or"
        f" out of service. ISA-18.2 per operator: activations in the last 10m {_target(PER_10_MINUTES)},"
        f" 1h {_target(PER_HOUR)}; chat(tering in the last hour) {_target(CHATTERING)}"
    )
    table = Table(
        title="Alarms",
        title_justify="left",
        caption=caption,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("site", no_wrap=True, overflow="ellipsis", max_width=24)
    for priority in PRIORITIES:
        table.add_column(priority.value[0].upper(), justify="right")
    for column in ("unack", "hidden", "10m", "1h", "chat"):
        table.add_column(column, justify="right")
    table.add_column("flood")
    shared = {s.site for s in sites if sum(1 for o in sites if o.site == s.site) > 1}
    for s in sites:
        table.add_row(
            f"{s.tenant}/{s.site}" if s.site in shared else s.site,
            *_active(s.active),
            _count(s.unacknowledged, "bold" if s.unacknowledged else ""),
            _count(s.hidden),
            _judged(s.last_10m, PER_10_MINUTES),
            _judged(s.last_1h, PER_HOUR),
            _judged(s.chattering, CHATTERING),
            Text("FLOOD", style="bold red") if s.in_flood else Text("-"),
        )
    return table


def _target(target: Target) -> str:
    if target.acceptable == target.maximum:
        return f"{target.maximum:g}" if target.maximum == 0 else f"≤{target.maximum:g}"
    return f"~{target.acceptable:g} (≤{target.maximum:g})"


def _active(by_priority: Mapping[str, float]) -> list[Text]:
    cells = []
    for priority in PRIORITIES:
        n = by_priority.get(priority.value, 0.0)
        urgent = priority in (Priority.EMERGENCY, Priority.HIGH)
        cells.append(_count(n, "bold red" if n and urgent else ""))
    return cells


def _count(value: float, style: str = "") -> Text:
    return Text(f"{value:,.0f}", style=style)


def _judged(value: float, target: Target) -> Text:
    return _count(value, _STYLE[target.judge(value)])
