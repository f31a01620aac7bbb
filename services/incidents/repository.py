"""The incident tables: lock and load a site's fusion state, write back what a unit of work changed.

Concurrency by row locks: every unit of work on a site (a batch of alarm messages, a person's
request) first locks the site's row in incident_sites, then the incidents it reads, `FOR UPDATE`.
So fusion and people never overwrite each other's change of an incident, and as the site lock
always comes first, two units of work never deadlock. Sites are locked in (tenant, site) order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import msgspec

from services.incidents.domain.fusion import SiteState
from services.incidents.domain.incident import Incident
from services.incidents.domain.model import Signal
from services.incidents.domain.timeline import Entry

_ENSURE_SITE = "INSERT INTO incident_sites (tenant, site) VALUES ($1, $2) ON CONFLICT DO NOTHING"
_LOCK_SITE = """
SELECT flood_id, flood_since, flood_until, pending FROM incident_sites
WHERE tenant = $1 AND site = $2
FOR UPDATE
"""
_LIVE = """
SELECT body FROM incidents
WHERE tenant = $1 AND site = $2 AND status IN ('open', 'acknowledged', 'dispatched')
ORDER BY id
FOR UPDATE
"""
_ONE = "SELECT site, body FROM incidents WHERE tenant = $1 AND id = $2"
_ONE_LOCKED = "SELECT body FROM incidents WHERE tenant = $1 AND id = $2 FOR UPDATE"
_SAVE_SITE = """
UPDATE incident_sites SET flood_id = $3, flood_since = $4, flood_until = $5, pending = $6::jsonb
WHERE tenant = $1 AND site = $2
"""
_SAVE_INCIDENT = """
INSERT INTO incidents (tenant, id, site, type, status, severity, severity_rank, opened_at, updated_at,
                       lat, lon, assignee, version, body)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::jsonb)
ON CONFLICT (tenant, id) DO UPDATE SET
    status = EXCLUDED.status, severity = EXCLUDED.severity, severity_rank = EXCLUDED.severity_rank,
    opened_at = EXCLUDED.opened_at, updated_at = EXCLUDED.updated_at, lat = EXCLUDED.lat,
    lon = EXCLUDED.lon, assignee = EXCLUDED.assignee, version = EXCLUDED.version, body = EXCLUDED.body
"""
_ADD_ENTRIES = """
INSERT INTO incident_timeline (id, tenant, incident_id, at, actor, change, what, note, alarm_id, status)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::text[], $10::text[])
ON CONFLICT (id) DO NOTHING
RETURNING id
"""
_OPEN_BY_SEVERITY = """
SELECT severity, count(*) AS n FROM incidents
WHERE status IN ('open', 'acknowledged', 'dispatched') GROUP BY severity
"""

_PENDING = msgspec.json.Decoder(list[Signal])
_INCIDENT = msgspec.json.Decoder(Incident)


@dataclass(slots=True)
class LockedSite:
    """A site's fusion state as locked by a unit of work."""

    tenant: str
    site: str
    state: SiteState
    touched: set[str] = field(default_factory=set)  # incident ids to write back
    # The site row as read: written back only if fusion changed it (most units of work do not).
    read: tuple[object, ...] = ()


async def lock_sites(conn: asyncpg.Connection, keys: Iterable[tuple[str, str]]) -> list[LockedSite]:
    """Lock the sites' rows (creating them), in order, and load their live incidents."""
    locked = []
    for tenant, site in sorted(set(keys)):
        # The row exists but for a site's first unit of work: lock it first, write only then.
        row = await conn.fetchrow(_LOCK_SITE, tenant, site)
        if row is None:
            await conn.execute(_ENSURE_SITE, tenant, site)
            row = await conn.fetchrow(_LOCK_SITE, tenant, site)
        incidents = [_INCIDENT.decode(r["body"]) for r in await conn.fetch(_LIVE, tenant, site)]
        flood_id = row["flood_id"]
        if flood_id is not None and all(i.id != flood_id for i in incidents):
            # The latest flood, ended: late alarms of its time are still counted in it.
            flood = await lock_incident(conn, tenant, flood_id)
            if flood is not None:
                incidents.append(flood)
        state = SiteState(
            incidents=incidents,
            pending=_PENDING.decode(row["pending"]),
            flood_id=flood_id,
            flood_since=row["flood_since"],
            flood_until=row["flood_until"],
        )
        read = (flood_id, row["flood_since"], row["flood_until"], _site_pending(state))
        locked.append(LockedSite(tenant, site, state, read=read))
    return locked


async def save_site(conn: asyncpg.Connection, locked: LockedSite) -> None:
    state = locked.state
    site = (state.flood_id, state.flood_since, state.flood_until, _site_pending(state))
    if site != locked.read:
        await conn.execute(_SAVE_SITE, locked.tenant, locked.site, *site)
    touched = [_incident_row(i) for i in state.incidents if i.id in locked.touched]
    if touched:
        # One round trip for them all: asyncpg pipelines executemany's statements.
        await conn.executemany(_SAVE_INCIDENT, touched)


def _site_pending(state: SiteState) -> str:
    return msgspec.json.encode(state.pending).decode()


async def save_incident(conn: asyncpg.Connection, incident: Incident) -> None:
    await conn.execute(_SAVE_INCIDENT, *_incident_row(incident))


def _incident_row(incident: Incident) -> tuple[object, ...]:
    position = incident.position
    return (
        incident.tenant,
        incident.id,
        incident.site,
        str(incident.type),
        str(incident.status),
        str(incident.severity),
        incident.severity.rank,
        incident.opened_at,
        incident.updated_at,
        position[0] if position else None,
        position[1] if position else None,
        incident.assignee,
        incident.version,
        msgspec.json.encode(incident).decode(),
    )


async def add_entries(conn: asyncpg.Connection, entries: Sequence[Entry]) -> set[str]:
    """Write the entries not written before; returns the ids written now."""
    if not entries:
        return set()
    rows = await conn.fetch(
        _ADD_ENTRIES,
        [e.id for e in entries],
        [_tenant_of(e) for e in entries],
        [e.incident_id for e in entries],
        [e.at for e in entries],
        [e.actor for e in entries],
        [e.change for e in entries],
        [e.what for e in entries],
        [e.note for e in entries],
        [e.alarm_id for e in entries],
        [str(e.status) for e in entries],
    )
    return {row["id"] for row in rows}


def _tenant_of(entry: Entry) -> str:
    if not entry.tenant:
        raise ValueError(f"timeline entry {entry.id} has no tenant")
    return entry.tenant


async def incident_site(conn: asyncpg.Connection, tenant: str, incident_id: str) -> str | None:
    """The site of one of the tenant's incidents (None: no such incident of this tenant)."""
    row = await conn.fetchrow(_ONE, tenant, incident_id)
    return None if row is None else str(row["site"])


async def lock_incident(conn: asyncpg.Connection, tenant: str, incident_id: str) -> Incident | None:
    row = await conn.fetchrow(_ONE_LOCKED, tenant, incident_id)
    return None if row is None else _INCIDENT.decode(row["body"])


async def load_incident(conn: asyncpg.Connection, tenant: str, incident_id: str) -> Incident | None:
    row = await conn.fetchrow(_ONE, tenant, incident_id)
    return None if row is None else _INCIDENT.decode(row["body"])


async def open_by_severity(conn: asyncpg.Connection) -> dict[str, int]:
    return {row["severity"]: row["n"] for row in await conn.fetch(_OPEN_BY_SEVERITY)}


# ---------------------------------------------------------------- attachments


@dataclass(frozen=True, slots=True)
class AttachmentRow:
    """One stored photo's facts (not its bytes)."""

    id: str
    incident_id: str
    content_type: str
    size: int
    width: int
    height: int
    sha256: str
    filename: str
    added_by: str
    added_at: datetime


_ATTACHMENT_COLUMNS = (
    "id, incident_id, content_type, size, width, height, sha256, filename, added_by, added_at"
)
_ADD_ATTACHMENT = """
INSERT INTO incident_attachments (tenant, id, incident_id, content_type, size, width, height, sha256,
                                  filename, added_by, added_at, data)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
"""
_ATTACHMENT_BY_DIGEST = f"""
SELECT {_ATTACHMENT_COLUMNS} FROM incident_attachments
WHERE tenant = $1 AND incident_id = $2 AND sha256 = $3
"""
_ATTACHMENTS_OF = f"""
SELECT {_ATTACHMENT_COLUMNS} FROM incident_attachments
WHERE tenant = $1 AND incident_id = $2 ORDER BY id
"""
_ATTACHMENT_DATA = """
SELECT content_type, sha256, data FROM incident_attachments
WHERE tenant = $1 AND incident_id = $2 AND id = $3
"""


def _attachment(row: asyncpg.Record) -> AttachmentRow:
    return AttachmentRow(**{name: row[name] for name in AttachmentRow.__slots__})


async def add_attachment(conn: asyncpg.Connection, tenant: str, row: AttachmentRow, data: bytes) -> None:
    await conn.execute(
        _ADD_ATTACHMENT,
        tenant,
        row.id,
        row.incident_id,
        row.content_type,
        row.size,
        row.width,
        row.height,
        row.sha256,
        row.filename,
        row.added_by,
        row.added_at,
        data,
    )


async def attachment_by_digest(
    conn: asyncpg.Connection, tenant: str, incident_id: str, sha256: str
) -> AttachmentRow | None:
    row = await conn.fetchrow(_ATTACHMENT_BY_DIGEST, tenant, incident_id, sha256)
    return None if row is None else _attachment(row)


async def attachments_of(conn: asyncpg.Connection, tenant: str, incident_id: str) -> list[AttachmentRow]:
    return [_attachment(row) for row in await conn.fetch(_ATTACHMENTS_OF, tenant, incident_id)]


async def attachment_data(
    conn: asyncpg.Connection, tenant: str, incident_id: str, attachment_id: str
) -> tuple[str, str, bytes] | None:
    """Content type, SHA-256 and bytes of one of the incident's attachments."""
    row = await conn.fetchrow(_ATTACHMENT_DATA, tenant, incident_id, attachment_id)
    return None if row is None else (row["content_type"], row["sha256"], bytes(row["data"]))
