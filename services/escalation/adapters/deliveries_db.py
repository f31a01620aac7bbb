"""The deliveries table: queue deliveries, claim the due ones, record each attempt's outcome.

A delivery's row is its timer: `due_at` is its next attempt. Workers claim due rows with
`FOR UPDATE SKIP LOCKED` and mark them `sending` in the same statement, with `due_at` moved to the
end of a lease: any number of workers (processes, replicas) claim disjoint rows, so each attempt
is made once; a worker that dies mid-send leaves its rows to be claimed again when the lease ends
(the receiver sees the same `webhook-id` again and drops it). Each outcome is written only by the
claim that made the attempt (`claim` = the worker's token).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import msgspec

NOTIFY_CHANNEL = "escalation_due"

_QUEUE = """
WITH queued AS (
    INSERT INTO escalation_deliveries (id, tenant, endpoint_id, incident_id, site, change, event_type,
                                       body, content_type, status, due_at, created_at)
    SELECT q.id, q.tenant, q.endpoint_id, q.incident_id, q.site, q.change, q.event_type, q.body,
           q.content_type, 'pending', $11, q.created_at
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                $8::bytea[], $9::text[], $10::timestamptz[])
         AS q(id, tenant, endpoint_id, incident_id, site, change, event_type, body, content_type, created_at)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)
SELECT count(*) AS queued, pg_notify($12, '') FROM queued
"""

# Up to the capacity left per endpoint in this worker ($5: endpoints, $6: what each has in
# flight), oldest first; the rows re-checked and locked, skipping those another worker holds.
_CLAIM = """
WITH ranked AS (
    SELECT d.id, row_number() OVER (PARTITION BY d.endpoint_id ORDER BY d.due_at, d.seq) AS rank,
           $4::int - coalesce(f.n, 0) AS room
    FROM escalation_deliveries d
    JOIN escalation_endpoints e ON e.tenant = d.tenant AND e.id = d.endpoint_id
    LEFT JOIN unnest($5::text[], $6::int[]) AS f(endpoint_id, n) ON f.endpoint_id = d.endpoint_id
    WHERE d.status IN ('pending', 'sending') AND d.due_at <= $1
      AND e.enabled AND e.deleted_at IS NULL AND (e.breaker_until IS NULL OR e.breaker_until <= $1)
),
picked AS (
    SELECT d.id FROM escalation_deliveries d
    WHERE d.id IN (SELECT id FROM ranked WHERE rank <= room)
      AND d.status IN ('pending', 'sending') AND d.due_at <= $1
    ORDER BY d.due_at
    LIMIT $7
    FOR UPDATE SKIP LOCKED
)
UPDATE escalation_deliveries d SET status = 'sending', claim = $2, due_at = $3
FROM picked, escalation_endpoints e
WHERE d.id = picked.id AND e.tenant = d.tenant AND e.id = d.endpoint_id
RETURNING d.id, d.tenant, d.endpoint_id, d.incident_id, d.site, d.change, d.body, d.content_type,
          d.attempts, d.created_at, e.url, e.headers::text AS headers, e.secret, e.previous_secret,
          e.previous_until
"""

_FINISH = """
UPDATE escalation_deliveries
SET status = $3, attempts = attempts + 1, due_at = coalesce($4, due_at), claim = NULL,
    delivered_at = $5, last_status = $6, last_error = $7
WHERE id = $1 AND claim = $2 AND status = 'sending'
RETURNING tenant, endpoint_id
"""

_RELEASE = """
UPDATE escalation_deliveries SET status = 'pending', claim = NULL, due_at = $3
WHERE id = ANY($1::text[]) AND claim = $2 AND status = 'sending'
"""


@dataclass(frozen=True, slots=True)
class Queued:
    id: str
    tenant: str
    endpoint_id: str
    incident_id: str
    site: str
    change: str
    event_type: str
    body: bytes
    content_type: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery to attempt now, with what its endpoint needs to send it."""

    id: str
    tenant: str
    endpoint_id: str
    incident_id: str
    site: str
    change: str
    body: bytes
    content_type: str
    attempts: int  # made before this one
    created_at: datetime
    url: str
    headers: Mapping[str, str]
    secret: str
    previous_secret: str | None
    previous_until: datetime | None

    def signing_secrets(self, now: datetime) -> list[str]:
        if self.previous_secret and self.previous_until is not None and now < self.previous_until:
            return [self.secret, self.previous_secret]
        return [self.secret]


async def queue(conn: asyncpg.Connection, rows: Sequence[Queued], now: datetime) -> int:
    """Insert the deliveries not queued before (by id); wake the workers at commit."""
    if not rows:
        return 0
    columns = list(
        zip(
            *(
                (
                    r.id,
                    r.tenant,
                    r.endpoint_id,
                    r.incident_id,
                    r.site,
                    r.change,
                    r.event_type,
                    r.body,
                    r.content_type,
                    r.created_at,
                )
                for r in rows
            ),
            strict=True,
        )
    )
    result = await conn.fetchrow(_QUEUE, *map(list, columns), now, NOTIFY_CHANNEL)
    return int(result["queued"]) if result is not None else 0


async def notified(
    conn: asyncpg.Connection, tenant: str, incident_ids: Sequence[str]
) -> set[tuple[str, str]]:
    """(incident, endpoint) pairs that already have a delivery: who hears of the incident's end."""
    rows = await conn.fetch(
        "SELECT DISTINCT incident_id, endpoint_id FROM escalation_deliveries"
        " WHERE tenant = $1 AND incident_id = ANY($2::text[])",
        tenant,
        list(incident_ids),
    )
    return {(r["incident_id"], r["endpoint_id"]) for r in rows}


async def claim(
    pool: asyncpg.Pool,
    *,
    now: datetime,
    token: str,
    lease_until: datetime,
    per_endpoint: int,
    in_flight: Mapping[str, int],
    limit: int,
) -> list[Claimed]:
    rows = await pool.fetch(
        _CLAIM,
        now,
        token,
        lease_until,
        per_endpoint,
        list(in_flight),
        list(in_flight.values()),
        limit,
    )
    return [
        Claimed(
            id=r["id"],
            tenant=r["tenant"],
            endpoint_id=r["endpoint_id"],
            incident_id=r["incident_id"],
            site=r["site"],
            change=r["change"],
            body=bytes(r["body"]),
            content_type=r["content_type"],
            attempts=r["attempts"],
            created_at=r["created_at"],
            url=r["url"],
            headers=msgspec.json.decode(r["headers"]),
            secret=r["secret"],
            previous_secret=r["previous_secret"],
            previous_until=r["previous_until"],
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    status: str  # pending (to retry), delivered, dead
    due: datetime | None
    delivered_at: datetime | None
    http_status: int | None
    error: str
    # What it tells of the endpoint: it answered (its failures in a row are forgotten), it
    # failed (one more; `breaker_after` in a row open its breaker until `breaker_until`), or it
    # is gone (a 410: disabled, with this reason).
    answered: bool
    breaker_after: int = 0
    breaker_until: datetime | None = None
    disable_reason: str | None = None


async def finish(pool: asyncpg.Pool, delivery: Claimed, token: str, outcome: Outcome) -> bool:
    """Record the attempt (and its endpoint's breaker); False when the claim was lost meanwhile."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            _FINISH,
            delivery.id,
            token,
            outcome.status,
            outcome.due,
            outcome.delivered_at,
            outcome.http_status,
            outcome.error[:2000],
        )
        if row is None:
            return False
        if outcome.disable_reason is not None:
            await conn.execute(
                "UPDATE escalation_endpoints SET enabled = false, disabled_reason = $3, failures = 0,"
                " breaker_until = NULL WHERE tenant = $1 AND id = $2",
                delivery.tenant,
                delivery.endpoint_id,
                outcome.disable_reason,
            )
        elif outcome.answered:
            await conn.execute(
                "UPDATE escalation_endpoints SET failures = 0, breaker_until = NULL"
                " WHERE tenant = $1 AND id = $2 AND (failures <> 0 OR breaker_until IS NOT NULL)",
                delivery.tenant,
                delivery.endpoint_id,
            )
        else:
            # One more failure in a row, counted in the row: workers share the breaker.
            await conn.execute(
                "UPDATE escalation_endpoints SET failures = failures + 1,"
                " breaker_until = CASE WHEN failures + 1 >= $3 THEN $4 ELSE breaker_until END"
                " WHERE tenant = $1 AND id = $2",
                delivery.tenant,
                delivery.endpoint_id,
                outcome.breaker_after,
                outcome.breaker_until,
            )
    return True


async def release(pool: asyncpg.Pool, ids: Sequence[str], token: str, now: datetime) -> None:
    """Hand back deliveries claimed but not attempted (a stopping worker): due at once."""
    if ids:
        await pool.execute(_RELEASE, list(ids), token, now)


async def pending_count(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM escalation_deliveries WHERE status IN ('pending', 'sending')"
    )
    return count
