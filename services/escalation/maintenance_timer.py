"""The maintenance timers: reminders before a window's muting ends, and held incidents looked at
again when it may have ended.

Both are rows (a window's `remind_at`, an `escalation_held` row's `due_at`), found every
`poll_interval_s` in one transaction that locks them (`FOR UPDATE SKIP LOCKED`: any number of
workers, each row handled once), as the climb timer does.

- A reminder due: every enabled JSON endpoint of the window's site gets a signed
  `org.safetyhub.maintenance.ending.v1` CloudEvent (its id derived from the window, the
  occurrence's end and the endpoint, so it is queued once), the window remembers the end it
  reminded of, and its timer moves to the next occurrence's reminder.
- A held incident due: if its site and zones are still muted, the timer moves to the next
  moment that may change; otherwise each endpoint's latest held notification of it is sent now,
  unless the incident was acknowledged or resolved meanwhile (maintenance_db.release).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from services.common.contracts.ids import derived_id
from services.common.logging import get_logger
from services.escalation import metrics
from services.escalation.adapters import deliveries_db, endpoints_db, maintenance_db
from services.escalation.adapters.cloudevent import CONTENT_TYPE
from services.escalation.adapters.deliveries_db import Queued
from services.escalation.adapters.endpoints_db import EndpointRow
from services.escalation.adapters.maintenance_db import WindowRow
from services.escalation.adapters.maintenance_event import ENDING_CHANGE, ENDING_TYPE, ending_event
from services.escalation.domain.maintenance import (
    DEFAULT_HORIZON,
    MaintenanceWindow,
    is_muted,
    next_change,
    next_reminder,
    reminders_due,
)
from services.escalation.timer_loop import BATCH, TimerLoop

log = get_logger(__name__)


def reminder_id(window_id: str, expires: datetime, endpoint_id: str) -> str:
    """One occurrence's reminder to one endpoint: the same whoever computes it."""
    return "msg_" + derived_id(int(expires.timestamp() * 1000), "maintenance-ending", window_id, endpoint_id)


def first_reminder(window: MaintenanceWindow, lead_s: float, now: datetime) -> datetime | None:
    """When a window's reminder timer is first due: now if an occurrence is already within its
    lead, else the next one's."""
    lead = timedelta(seconds=lead_s)
    if reminders_due([window], now, lead):
        return now
    return next_reminder([window], now, lead)


def takes_reminders(endpoint: EndpointRow, site: str) -> bool:
    """JSON endpoints of the site (a CAP endpoint takes alerts about incidents only)."""
    return (
        endpoint.enabled and endpoint.format == "json" and (endpoint.sites is None or site in endpoint.sites)
    )


class MaintenanceTimer(TimerLoop):
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        poll_interval_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(name="maintenance", poll_interval_s=poll_interval_s)
        self._pool = pool
        self._clock = clock

    async def run_pass(self) -> int:
        return await self.run_due()

    async def run_due(self) -> int:
        """One pass: due reminders queued, due held incidents looked at; how many rows moved."""
        now = self._clock()
        async with self._pool.acquire() as conn, conn.transaction():
            moved = await self._remind(conn, now)
            moved += await self._look_again(conn, now)
        return moved

    async def _remind(self, conn: asyncpg.Connection, now: datetime) -> int:
        due = await maintenance_db.due_reminders(conn, now, BATCH)
        if not due:
            return 0
        endpoints = await endpoints_db.of_tenants(conn, sorted({r.tenant for r in due}))
        rows: list[Queued] = []
        for row in due:
            rows += self._reminders(row, endpoints.get(row.tenant, []), now)
            await maintenance_db.set_reminder(conn, row, row.remind_at, row.reminded_until)
        await deliveries_db.queue(conn, rows, now)
        if rows:
            metrics.REMINDERS.inc(len(rows))
        return len(due)

    def _reminders(self, row: WindowRow, endpoints: list[EndpointRow], now: datetime) -> list[Queued]:
        window, lead = row.window, timedelta(seconds=row.reminder_lead_s)
        reminded = row.reminded_until
        out: list[Queued] = []
        for reminder in reminders_due([window], now, lead):
            if reminded is not None and reminder.expires <= reminded:
                continue  # this occurrence's reminder went out already
            reminded = reminder.expires
            for endpoint in endpoints:
                if not takes_reminders(endpoint, window.site):
                    continue
                delivery_id = reminder_id(window.id, reminder.expires, endpoint.id)
                out.append(
                    Queued(
                        id=delivery_id,
                        tenant=row.tenant,
                        endpoint_id=endpoint.id,
                        incident_id="",
                        site=window.site,
                        change=ENDING_CHANGE,
                        event_type=ENDING_TYPE,
                        body=ending_event(row.tenant, reminder, delivery_id, now),
                        content_type=CONTENT_TYPE,
                        created_at=now,
                    )
                )
            log.info(
                "maintenance_ending_reminded",
                site=window.site,
                window=window.id,
                ends_at=reminder.expires.isoformat(),
                endpoints=len(out),
            )
        # The next occurrence's; a stale one (the timer ran after the end) is skipped, not sent late.
        row.remind_at = next_reminder([window], now, lead)
        row.reminded_until = reminded
        return out

    async def _look_again(self, conn: asyncpg.Connection, now: datetime) -> int:
        due = await maintenance_db.due_held(conn, now, BATCH)
        if not due:
            return 0
        windows = await maintenance_db.windows_of_tenants(conn, sorted({h.tenant for h in due}))
        for held in due:
            theirs = windows.get(held.tenant, [])
            if is_muted(theirs, site=held.site, zone=held.zones, safety_class=False, at=now):
                until = next_change(theirs, site=held.site, zone=held.zones, safety_class=False, at=now)
                await maintenance_db.move_held(
                    conn, held.tenant, held.incident_id, until or now + DEFAULT_HORIZON
                )
                continue
            sent = await maintenance_db.release(conn, held.tenant, held.incident_id, now)
            await maintenance_db.drop_held(conn, held.tenant, held.incident_id)
            log.info("maintenance_over", incident_id=held.incident_id, site=held.site, released=sent)
        return len(due)
