"""The feed's tables: policy versions, export records, delayed events and hourly counts.

Every function takes the caller's connection: the consumers and the API call them inside a unit
of work, so a policy version and its audit row, or an event, its export record and its outbox
message, commit together. Timer rows are taken `FOR UPDATE SKIP LOCKED`: workers share them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from services.common.bus.publisher import OutgoingMessage
from services.feed.domain.policy import PolicyInForce, SharingPolicy, no_policy

_POLICY = msgspec.json.Decoder(SharingPolicy)

_IN_FORCE = """
SELECT DISTINCT ON (tenant, site) tenant, site, version, body FROM feed_policies
WHERE (tenant, site) IN (SELECT * FROM unnest($1::text[], $2::text[]))
ORDER BY tenant, site, version DESC
"""
_LATEST = """
SELECT version, body, source, set_by, set_at FROM feed_policies
WHERE tenant = $1 AND site = $2 ORDER BY version DESC LIMIT 1
"""
_LATEST_FROM_CONFIG = """
SELECT body FROM feed_policies WHERE tenant = $1 AND site = $2 AND source = 'config'
ORDER BY version DESC LIMIT 1
"""
# One writer of a site's versions at a time: the lock is the transaction's, taken before reading
# the highest version, so two requests never both write version n + 1.
_LOCK_SITE = "SELECT pg_advisory_xact_lock(hashtextextended('feed_policies/' || $1 || '/' || $2, 0))"
_INSERT_POLICY = """
INSERT INTO feed_policies (tenant, site, version, level, body, source, set_by)
SELECT $1, $2, coalesce(max(version), 0) + 1, $3, $4::jsonb, $5, $6
FROM feed_policies WHERE tenant = $1 AND site = $2
RETURNING version, set_at
"""
_RECORD_EXPORTS = """
INSERT INTO feed_exports (event_id, tenant, site, kind, object_id, policy_version, level, fields, event_time)
SELECT e, t, s, k, o, v, l, f::text[], at
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[],
            $8::text[], $9::timestamptz[]) AS x(e, t, s, k, o, v, l, f, at)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""
_ADD_PENDING = """
INSERT INTO feed_pending (event_id, tenant, site, kind, object_id, policy_version, level, fields, event_time,
                          due, subject, payload, headers)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text[], $9, $10, $11, $12, $13::jsonb)
ON CONFLICT (event_id) DO NOTHING
"""
_DUE_PENDING = """
DELETE FROM feed_pending WHERE event_id IN (
    SELECT event_id FROM feed_pending WHERE due <= $1 ORDER BY due LIMIT $2 FOR UPDATE SKIP LOCKED
)
RETURNING *
"""
_ADD_COUNT = """
INSERT INTO feed_counts (tenant, site, hour, zone, incidents, alarms) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (tenant, site, hour, zone) DO UPDATE SET
    incidents = feed_counts.incidents + EXCLUDED.incidents, alarms = feed_counts.alarms + EXCLUDED.alarms
"""
_ENSURE_HOUR = """
INSERT INTO feed_count_hours (tenant, site, hour, due) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING
"""
_DUE_HOURS = """
DELETE FROM feed_count_hours WHERE (tenant, site, hour) IN (
    SELECT tenant, site, hour FROM feed_count_hours WHERE due <= $1 ORDER BY due LIMIT $2
    FOR UPDATE SKIP LOCKED
)
RETURNING tenant, site, hour
"""
_TAKE_COUNTS = """
DELETE FROM feed_counts WHERE tenant = $1 AND site = $2 AND hour = $3
RETURNING zone, incidents, alarms
"""
_EXPORTS = """
SELECT seq, event_id, site, kind, object_id, policy_version, level, fields, event_time, exported_at
FROM feed_exports
WHERE tenant = $1 AND site = ANY($2::text[]) AND exported_at >= $3 AND seq > $4
ORDER BY seq LIMIT $5
"""


# ------------------------------------------------------------------ policies


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    version: int
    policy: SharingPolicy
    source: str
    set_by: str
    set_at: datetime


async def policies_in_force(
    conn: asyncpg.Connection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], PolicyInForce]:
    """Each site's policy in force (version 0, sharing nothing, for a site without one)."""
    wanted = sorted(set(keys))
    found = {
        (row["tenant"], row["site"]): PolicyInForce(
            tenant=row["tenant"], site=row["site"], version=row["version"], policy=_POLICY.decode(row["body"])
        )
        for row in await conn.fetch(_IN_FORCE, [t for t, _ in wanted], [s for _, s in wanted])
    }
    return {key: found.get(key) or no_policy(*key) for key in wanted}


async def latest_policy(conn: asyncpg.Connection, tenant: str, site: str) -> PolicyVersion | None:
    row = await conn.fetchrow(_LATEST, tenant, site)
    if row is None:
        return None
    return PolicyVersion(
        row["version"], _POLICY.decode(row["body"]), row["source"], row["set_by"], row["set_at"]
    )


async def set_policy(
    conn: asyncpg.Connection, tenant: str, site: str, policy: SharingPolicy, *, source: str, set_by: str
) -> PolicyVersion:
    """Write `policy` as the site's next version (call inside a transaction)."""
    await conn.execute(_LOCK_SITE, tenant, site)
    body = msgspec.json.encode(policy).decode()
    row = await conn.fetchrow(_INSERT_POLICY, tenant, site, str(policy.level), body, source, set_by)
    assert row is not None  # INSERT ... SELECT over an aggregate always yields one row
    return PolicyVersion(row["version"], policy, source, set_by, row["set_at"])


async def config_policy_changed(
    conn: asyncpg.Connection, tenant: str, site: str, policy: SharingPolicy
) -> bool:
    """Whether the config's policy for the site differs from the one the config set last."""
    await conn.execute(_LOCK_SITE, tenant, site)
    body = await conn.fetchval(_LATEST_FROM_CONFIG, tenant, site)
    return body is None or _POLICY.decode(body) != policy


# ------------------------------------------------------------------ exports


@dataclass(frozen=True, slots=True)
class ExportRow:
    event_id: str
    tenant: str
    site: str
    kind: str
    object_id: str
    policy_version: int
    level: str
    fields: tuple[str, ...]
    event_time: datetime


async def record_exports(conn: asyncpg.Connection, rows: Sequence[ExportRow]) -> set[str]:
    """Record the exports not recorded before; returns the event ids recorded now."""
    if not rows:
        return set()
    written = await conn.fetch(
        _RECORD_EXPORTS,
        [r.event_id for r in rows],
        [r.tenant for r in rows],
        [r.site for r in rows],
        [r.kind for r in rows],
        [r.object_id for r in rows],
        [r.policy_version for r in rows],
        [r.level for r in rows],
        # A text[] per row cannot go through unnest as text[][] of ragged rows: one string each.
        ["{" + ",".join(_quote(f) for f in r.fields) + "}" for r in rows],
        [r.event_time for r in rows],
    )
    return {row["event_id"] for row in written}


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def list_exports(
    conn: asyncpg.Connection | asyncpg.Pool,
    tenant: str,
    sites: Sequence[str],
    since: datetime,
    *,
    after: int = 0,
    limit: int = 100,
) -> list[asyncpg.Record]:
    return list(await conn.fetch(_EXPORTS, tenant, list(sites), since, after, limit))


# ------------------------------------------------------------------ delayed events


@dataclass(frozen=True, slots=True)
class Pending:
    export: ExportRow
    due: datetime
    message: OutgoingMessage


async def add_pending(conn: asyncpg.Connection, pending: Pending) -> None:
    e, m = pending.export, pending.message
    await conn.execute(
        _ADD_PENDING,
        e.event_id,
        e.tenant,
        e.site,
        e.kind,
        e.object_id,
        e.policy_version,
        e.level,
        list(e.fields),
        e.event_time,
        pending.due,
        m.subject,
        m.payload,
        msgspec.json.encode(m.headers).decode(),
    )


async def take_due_pending(conn: asyncpg.Connection, now: datetime, limit: int) -> list[Pending]:
    """Remove and return the delayed events due by `now` (their rows stay if the caller rolls back)."""
    taken = []
    for row in await conn.fetch(_DUE_PENDING, now, limit):
        headers: dict[str, Any] = msgspec.json.decode(row["headers"])
        export = ExportRow(
            row["event_id"],
            row["tenant"],
            row["site"],
            row["kind"],
            row["object_id"],
            row["policy_version"],
            row["level"],
            tuple(row["fields"]),
            row["event_time"],
        )
        message = OutgoingMessage(
            row["subject"], bytes(row["payload"]), {k: str(v) for k, v in headers.items()}
        )
        taken.append(Pending(export, row["due"], message))
    return taken


# ------------------------------------------------------------------ hourly counts


@dataclass(frozen=True, slots=True)
class CountedHour:
    tenant: str
    site: str
    hour: datetime
    zones: dict[str, tuple[int, int]]  # zone -> (incidents, alarms)


async def add_counts(
    conn: asyncpg.Connection,
    counts: dict[tuple[str, str, datetime, str], tuple[int, int]],
    due: dict[tuple[str, str, datetime], datetime],
) -> None:
    """Add (incidents, alarms) to each (tenant, site, hour, zone) and make each site-hour due.

    Locks in one order everywhere (the site-hours' rows, then the counts', each sorted), so the
    incident and alarm consumers counting the same hour never deadlock."""
    for tenant, site, hour in sorted(due):
        await conn.execute(_ENSURE_HOUR, tenant, site, hour, due[(tenant, site, hour)])
    for key in sorted(counts):
        tenant, site, hour, zone = key
        incidents, alarms = counts[key]
        await conn.execute(_ADD_COUNT, tenant, site, hour, zone, incidents, alarms)


async def take_due_hours(conn: asyncpg.Connection, now: datetime, limit: int) -> list[CountedHour]:
    """Remove and return the site-hours due by `now` with their counts."""
    hours = []
    for row in await conn.fetch(_DUE_HOURS, now, limit):
        counts = await conn.fetch(_TAKE_COUNTS, row["tenant"], row["site"], row["hour"])
        zones = {c["zone"]: (c["incidents"], c["alarms"]) for c in counts}
        hours.append(CountedHour(row["tenant"], row["site"], row["hour"], zones))
    return hours
