"""What an operator's alarm summary shows per site, kept as Prometheus gauges: the live view and
a scrape read the same figures.

Per site: the alarms shown active by priority, how many wait for an acknowledgement, how many are
hidden (shelved, suppressed, out of service), the activations of the last 10 minutes and of the
last hour (ISA-18.2 targets ~1 and ~6 per operator), the alarms that chattered in the last hour,
and whether the site is in a flood. Read from the alarm tables every `LIVE_EVERY_S`, in one
read-only snapshot so the figures agree with each other; every worker reads the same tables, so
the gauges aggregate by "max" under several workers. The engine's own code is not involved: the
figures are what it committed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
from prometheus_client import Gauge

from services.alarms.adapters.wire import CHATTERING
from services.alarms.domain.model import AlarmState, Priority
from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.common.logging import get_logger

log = get_logger(__name__)

LIVE_EVERY_S = 5.0
# The reads scan the last hour's transitions: a plant gives a few hundred, a benchmark hundreds of
# thousands (~0.1 s to read). Waiting this many times the last read between reads keeps them
# under 5 % of one core whatever the load, at the cost of staler figures under it.
BUSY_FACTOR = 20.0
STOP_S = 2.0
RECENT = timedelta(minutes=10)
HOUR = timedelta(hours=1)

_SITE = ["tenant", "site"]
SITE_ACTIVE = Gauge(
    "safetyhub_alarms_site_active",
    "Alarms shown active to operators (UNACK, ACKED, RTNUN), by site and priority",
    [*_SITE, "priority"],
    multiprocess_mode="max",
)
SITE_UNACKNOWLEDGED = Gauge(
    "safetyhub_alarms_site_unacknowledged",
    "Alarms waiting for an acknowledgement (UNACK, RTNUN), by site",
    _SITE,
    multiprocess_mode="max",
)
SITE_HIDDEN = Gauge(
    "safetyhub_alarms_site_hidden",
    "Alarms hidden from operators (shelved, suppressed, out of service), by site",
    _SITE,
    multiprocess_mode="max",
)
SITE_ACTIVATIONS_10M = Gauge(
    "safetyhub_alarms_site_activations_last_10m",
    "Alarm activations in the last 10 minutes, by site (ISA-18.2: ~1, at most 2; over 10 is a flood)",
    _SITE,
    multiprocess_mode="max",
)
SITE_ACTIVATIONS_1H = Gauge(
    "safetyhub_alarms_site_activations_last_1h",
    "Alarm activations in the last hour, by site (ISA-18.2: ~6, at most 12)",
    _SITE,
    multiprocess_mode="max",
)
SITE_CHATTERING = Gauge(
    "safetyhub_alarms_site_chattering_last_1h",
    "Alarms flagged chattering in the last hour, by site (ISA-18.2: none)",
    _SITE,
    multiprocess_mode="max",
)
SITE_IN_FLOOD = Gauge(
    "safetyhub_alarms_site_in_flood", "1 while the site is in an alarm flood", _SITE, multiprocess_mode="max"
)

_SHOWN = (AlarmState.UNACK, AlarmState.ACKED, AlarmState.RTNUN)
_UNACKNOWLEDGED = frozenset({AlarmState.UNACK.value, AlarmState.RTNUN.value})
_HIDDEN = frozenset({AlarmState.SHLVD.value, AlarmState.DSUPR.value, AlarmState.OOSRV.value})

# Per site (alarm_sites holds a row for every site the engine has evaluated), the transitions of
# the last hour by one range scan of alarm_transitions_site_at each.
RECENT_SQL = """
SELECT s.tenant, s.site, r.last_10m, r.last_1h, r.chattering, f.began_at IS NOT NULL AS in_flood
FROM alarm_sites s
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE t.activation AND t.at >= $2) AS last_10m,
           count(*) FILTER (WHERE t.activation) AS last_1h,
           count(DISTINCT t.alarm_id) FILTER (WHERE $3 = ANY(t.flags)) AS chattering
    FROM alarm_transitions t
    WHERE t.tenant = s.tenant AND t.site = s.site AND t.at >= $1
) AS r
LEFT JOIN LATERAL (
    SELECT began_at FROM alarm_floods fl
    WHERE fl.tenant = s.tenant AND fl.site = s.site AND fl.ended_at IS NULL
    LIMIT 1
) AS f ON true
"""

# What the partial index alarm_points_shown covers: every point not in NORM.
STATES_SQL = """
SELECT tenant, site, state, priority, count(*) AS n FROM alarm_points
WHERE state <> 'NORM' GROUP BY tenant, site, state, priority
"""


@dataclass(slots=True)
class SiteFigures:
    """One site's live alarm figures."""

    tenant: str
    site: str
    active: dict[str, int] = field(default_factory=dict)  # by priority
    unacknowledged: int = 0
    hidden: int = 0
    last_10m: int = 0
    last_1h: int = 0
    chattering: int = 0
    in_flood: bool = False


async def read_figures(pool: asyncpg.Pool, now: datetime) -> list[SiteFigures]:
    """Every site's figures at `now`, from one snapshot of the alarm tables."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        recent = await conn.fetch(RECENT_SQL, now - HOUR, now - RECENT, CHATTERING)
        states = await conn.fetch(STATES_SQL)
    sites: dict[tuple[str, str], SiteFigures] = {}

    def of(tenant: str, site: str) -> SiteFigures:
        return sites.setdefault((tenant, site), SiteFigures(tenant, site))

    for row in recent:
        figures = of(row["tenant"], row["site"])
        figures.last_10m, figures.last_1h = row["last_10m"], row["last_1h"]
        figures.chattering, figures.in_flood = row["chattering"], row["in_flood"]
    for row in states:
        figures = of(row["tenant"], row["site"])
        state, n = row["state"], row["n"]
        if state in _HIDDEN:
            figures.hidden += n
            continue
        figures.active[row["priority"]] = figures.active.get(row["priority"], 0) + n
        if state in _UNACKNOWLEDGED:
            figures.unacknowledged += n
    return sorted(sites.values(), key=lambda f: (f.tenant, f.site))


def publish(figures: Iterable[SiteFigures]) -> None:
    """Sets the gauges to `figures`: a site seen before and missing now reads zeros."""
    for f in figures:
        labels = (f.tenant, f.site)
        for priority in Priority:
            SITE_ACTIVE.labels(*labels, priority.value).set(f.active.get(priority.value, 0))
        SITE_UNACKNOWLEDGED.labels(*labels).set(f.unacknowledged)
        SITE_HIDDEN.labels(*labels).set(f.hidden)
        SITE_ACTIVATIONS_10M.labels(*labels).set(f.last_10m)
        SITE_ACTIVATIONS_1H.labels(*labels).set(f.last_1h)
        SITE_CHATTERING.labels(*labels).set(f.chattering)
        SITE_IN_FLOOD.labels(*labels).set(1 if f.in_flood else 0)


class LiveFigures:
    """Refreshes the gauges every `every_s` while started (less often when a read is slow)."""

    def __init__(self, pool: asyncpg.Pool, *, every_s: float = LIVE_EVERY_S) -> None:
        self._pool = pool
        self._every_s = every_s
        self._seen: set[tuple[str, str]] = set()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def refresh(self, now: datetime | None = None) -> list[SiteFigures]:
        figures = await read_figures(self._pool, now or datetime.now(UTC))
        now_seen = {(f.tenant, f.site) for f in figures}
        publish([*figures, *(SiteFigures(t, s) for t, s in sorted(self._seen - now_seen))])
        self._seen |= now_seen
        return figures

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="alarms-live-figures")

    async def stop(self) -> None:
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            # A read stuck on a frozen database is cancelled: the figures are not worth a slow stop.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(task, STOP_S)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            started = loop.time()
            try:
                await self.refresh()
            except TRANSIENT_DB_ERRORS as err:
                log.warning("alarm_live_figures_unavailable", error=str(err))
            except UnavailableError as err:
                log.warning("alarm_live_figures_unavailable", error=str(err))
            except Exception:  # a figure left stale must not stop the service
                log.exception("alarm_live_figures_failed")
            wait = max(self._every_s, BUSY_FACTOR * (loop.time() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)
