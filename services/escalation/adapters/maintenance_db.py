"""The maintenance windows table (each row also its reminder's timer) and the held incidents'
timers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import msgspec

from services.escalation.adapters.deliveries_db import NOTIFY_CHANNEL
from services.escalation.domain.maintenance import MaintenanceWindow

_DECODE = msgspec.json.Decoder(MaintenanceWindow)
_COLUMNS = """
tenant, id, site, zone, "window"::text AS window_json, reminder_lead_s, remind_at, reminded_until,
created_by, updated_by, created_at, updated_at, version
"""


@dataclass(slots=True, kw_only=True)
class WindowRow:
    tenant: str
    window: MaintenanceWindow
    reminder_lead_s: float
    remind_at: datetime | None
    reminded_until: datetime | None
    created_by: str
    updated_by: str
    created_at: datetime
    updated_at: datetime
    version: int

    @property
    def id(self) -> str:
        return self.window.id


def _row(r: asyncpg.Record) -> WindowRow:
    return WindowRow(
        tenant=r["tenant"],
        # Checked when it was written; decoded again without the site registry, which may have
        # changed since (a window of a zone since removed still reads, and mutes nothing).
        window=_DECODE.decode(r["window_json"]),
        reminder_lead_s=r["reminder_lead_s"],
        remind_at=r["remind_at"],
        reminded_until=r["reminded_until"],
        created_by=r["created_by"],
        updated_by=r["updated_by"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        version=r["version"],
    )


async def save(conn: asyncpg.Connection, row: WindowRow) -> None:
    w = row.window
    await conn.execute(
        """
        INSERT INTO escalation_maintenance_windows (tenant, id, site, zone, "window", reminder_lead_s,
            remind_at, reminded_until, created_by, updated_by, created_at, updated_at, version)
        VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11, $12, $13)
        ON CONFLICT (tenant, id) DO UPDATE SET site = EXCLUDED.site, zone = EXCLUDED.zone,
            "window" = EXCLUDED."window", reminder_lead_s = EXCLUDED.reminder_lead_s,
            remind_at = EXCLUDED.remind_at, reminded_until = EXCLUDED.reminded_until,
            updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at, version = EXCLUDED.version
        """,
        row.tenant,
        w.id,
        w.site,
        w.zone,
        msgspec.json.encode(w).decode(),
        row.reminder_lead_s,
        row.remind_at,
        row.reminded_until,
        row.created_by,
        row.updated_by,
        row.created_at,
        row.updated_at,
        row.version,
    )


async def of_tenant(
    conn: asyncpg.Connection | asyncpg.Pool, tenant: str, sites: Sequence[str] | None = None
) -> list[WindowRow]:
    """The tenant's windows (of `sites` only, when given), oldest first."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM escalation_maintenance_windows"
        " WHERE tenant = $1 AND ($2::text[] IS NULL OR site = ANY($2::text[])) ORDER BY created_at, id",
        tenant,
        list(sites) if sites is not None else None,
    )
    return [_row(r) for r in rows]


async def windows_of_tenants(
    conn: asyncpg.Connection, tenants: Sequence[str]
) -> dict[str, list[MaintenanceWindow]]:
    """Per tenant, its windows as the muting reads them."""
    rows = await conn.fetch(
        'SELECT tenant, "window"::text AS window_json FROM escalation_maintenance_windows'
        " WHERE tenant = ANY($1::text[])",
        list(tenants),
    )
    out: dict[str, list[MaintenanceWindow]] = {t: [] for t in tenants}
    for r in rows:
        out.setdefault(r["tenant"], []).append(_DECODE.decode(r["window_json"]))
    return out


async def load(
    conn: asyncpg.Connection, tenant: str, window_id: str, *, lock: bool = False
) -> WindowRow | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM escalation_maintenance_windows WHERE tenant = $1 AND id = $2"
        + (" FOR UPDATE" if lock else ""),
        tenant,
        window_id,
    )
    return _row(row) if row is not None else None


async def delete(conn: asyncpg.Connection, tenant: str, window_id: str) -> None:
    await conn.execute(
        "DELETE FROM escalation_maintenance_windows WHERE tenant = $1 AND id = $2", tenant, window_id
    )


async def due_reminders(conn: asyncpg.Connection, now: datetime, limit: int) -> list[WindowRow]:
    """Windows whose reminder is due, locked for this transaction; those another worker holds
    are skipped."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM escalation_maintenance_windows WHERE remind_at IS NOT NULL"
        " AND remind_at <= $1 ORDER BY remind_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [_row(r) for r in rows]


async def set_reminder(
    conn: asyncpg.Connection, row: WindowRow, remind_at: datetime | None, reminded_until: datetime | None
) -> None:
    await conn.execute(
        "UPDATE escalation_maintenance_windows SET remind_at = $3, reminded_until = $4"
        " WHERE tenant = $1 AND id = $2",
        row.tenant,
        row.id,
        remind_at,
        reminded_until,
    )


# ---------------------------------------------------------------------------- held incidents


@dataclass(frozen=True, slots=True)
class Held:
    tenant: str
    incident_id: str
    site: str
    zones: tuple[str, ...]
    due_at: datetime


async def hold(conn: asyncpg.Connection, held: Sequence[Held]) -> None:
    """Start (or move) the timers of incidents whose notifications were held back."""
    if not held:
        return
    await conn.execute(
        """
        INSERT INTO escalation_held (tenant, incident_id, site, zones, due_at)
        SELECT h.tenant, h.incident_id, h.site, string_to_array(h.zones, ' '), h.due_at
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
             AS h(tenant, incident_id, site, zones, due_at)
        ON CONFLICT (tenant, incident_id) DO UPDATE SET site = EXCLUDED.site, zones = EXCLUDED.zones,
            due_at = EXCLUDED.due_at
        """,
        [h.tenant for h in held],
        [h.incident_id for h in held],
        [h.site for h in held],
        # Zone ids are slugs (no spaces): one text per incident, as unnest cannot take a 2-D array
        # of rows of different lengths.
        [" ".join(h.zones) for h in held],
        [h.due_at for h in held],
    )


async def due_held(conn: asyncpg.Connection, now: datetime, limit: int) -> list[Held]:
    rows = await conn.fetch(
        "SELECT tenant, incident_id, site, zones, due_at FROM escalation_held WHERE due_at <= $1"
        " ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [
        Held(r["tenant"], r["incident_id"], r["site"], tuple(z for z in r["zones"] if z), r["due_at"])
        for r in rows
    ]


async def move_held(conn: asyncpg.Connection, tenant: str, incident_id: str, due_at: datetime) -> None:
    await conn.execute(
        "UPDATE escalation_held SET due_at = $3 WHERE tenant = $1 AND incident_id = $2",
        tenant,
        incident_id,
        due_at,
    )


async def drop_held(conn: asyncpg.Connection, tenant: str, incident_id: str) -> None:
    await conn.execute(
        "DELETE FROM escalation_held WHERE tenant = $1 AND incident_id = $2", tenant, incident_id
    )


async def recheck_site(conn: asyncpg.Connection, tenant: str, site: str, now: datetime) -> None:
    """A window of the site changed: its held incidents are looked at again now."""
    await conn.execute(
        "UPDATE escalation_held SET due_at = $3 WHERE tenant = $1 AND site = $2 AND due_at > $3",
        tenant,
        site,
        now,
    )


# Per (incident, endpoint) the latest delivery, if it is a held one, and whether the incident was
# acknowledged, dispatched, resolved or closed since it was last opened or reopened (then nothing
# held is sent: nobody need be paged any more).
_RELEASE = """
WITH latest AS (
    SELECT DISTINCT ON (endpoint_id) id, status FROM escalation_deliveries
    WHERE tenant = $1 AND incident_id = $2
    ORDER BY endpoint_id, seq DESC
), state AS (
    SELECT change FROM escalation_deliveries
    WHERE tenant = $1 AND incident_id = $2
      AND change IN ('opened', 'reopened', 'acknowledged', 'dispatched', 'resolved', 'closed')
    ORDER BY seq DESC LIMIT 1
)
UPDATE escalation_deliveries d SET status = 'pending', due_at = $3, last_error = ''
FROM latest
WHERE d.id = latest.id AND latest.status = 'muted'
  -- A deleted endpoint's held notifications stay as they are: nobody is there to send them to.
  AND EXISTS (SELECT 1 FROM escalation_endpoints e
              WHERE e.tenant = d.tenant AND e.id = d.endpoint_id AND e.deleted_at IS NULL)
  AND NOT EXISTS (SELECT 1 FROM state WHERE change IN ('acknowledged', 'dispatched', 'resolved', 'closed'))
RETURNING d.id
"""


async def release(conn: asyncpg.Connection, tenant: str, incident_id: str, now: datetime) -> int:
    """The muting is over: each endpoint's latest held notification of the incident is sent now
    (its earlier ones stay `muted`, as the record of what was held), unless the incident was
    acknowledged or resolved meanwhile, or the endpoint has heard of it since."""
    rows = await conn.fetch(_RELEASE, tenant, incident_id, now)
    if rows:
        await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return len(rows)
