"""The deliveries table: queue deliveries, claim the due ones, record each attempt's outcome.

A delivery's row is its timer: `due_at` is its next attempt. Workers claim due rows with
`FOR UPDATE SKIP LOCKED` and mark them `sending` in the same transaction, with `due_at` moved to the
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
                                       body, content_type, status, due_at, created_at, cap_reference,
                                       last_error)
    SELECT q.id, q.tenant, q.endpoint_id, q.incident_id, q.site, q.change, q.event_type, q.body,
           q.content_type, q.status, $11, q.created_at, q.cap_reference, q.reason
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                $8::bytea[], $9::text[], $10::timestamptz[], $13::text[], $14::text[], $15::text[])
         AS q(id, tenant, endpoint_id, incident_id, site, change, event_type, body, content_type, created_at,
              cap_reference, status, reason)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)
SELECT count(*) AS queued, pg_notify($12, '') FROM queued
"""

# One statement: per endpoint that may be tried now (enabled, not deleted, breaker closed), its
# oldest due rows up to the room it has left in this worker ($5 less what $3/$4 says is in
# flight), locked, skipping those another worker holds, at most $2 in all, marked `sending` with
# the lease ($7) and this worker's token ($6). One index range per endpoint, however long the queue.
_CLAIM = """
WITH picked AS (
    SELECT d.id FROM escalation_endpoints e
    LEFT JOIN unnest($3::text[], $4::int[]) AS f(endpoint_id, n) ON f.endpoint_id = e.id
    CROSS JOIN LATERAL (
        SELECT id, due_at FROM escalation_deliveries d
        WHERE endpoint_id = e.id AND tenant = e.tenant AND status IN ('pending', 'sending') AND due_at <= $1
          -- An incident's changes reach an endpoint in order: none while an earlier one is unsent.
          AND NOT EXISTS (
              SELECT 1 FROM escalation_deliveries p
              WHERE p.tenant = d.tenant AND p.incident_id = d.incident_id AND p.endpoint_id = d.endpoint_id
                AND p.seq < d.seq AND p.status IN ('pending', 'sending'))
        ORDER BY due_at
        LIMIT greatest(0, $5 - coalesce(f.n, 0))
        FOR UPDATE SKIP LOCKED
    ) d
    WHERE e.enabled AND e.deleted_at IS NULL AND (e.breaker_until IS NULL OR e.breaker_until <= $1)
    ORDER BY d.due_at
    LIMIT $2
)
UPDATE escalation_deliveries d SET status = 'sending', claim = $6, due_at = $7
FROM picked, escalation_endpoints e
WHERE d.id = picked.id AND e.tenant = d.tenant AND e.id = d.endpoint_id
RETURNING d.id, d.tenant, d.endpoint_id, d.incident_id, d.site, d.change, d.body, d.content_type,
          d.attempts, d.created_at, e.url, e.headers::text AS headers, e.secret, e.previous_secret,
          e.previous_until
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
    # A CAP alert's own reference ("sender,identifier,sent"), for the alerts after it.
    cap_reference: str | None = None
    # `pending`, or `muted`: held back by a maintenance window, `reason` saying which.
    status: str = "pending"
    reason: str = ""


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
                    r.cap_reference,
                    r.status,
                    r.reason,
                )
                for r in rows
            ),
            strict=True,
        )
    )
    *values, references, statuses, reasons = map(list, columns)
    result = await conn.fetchrow(_QUEUE, *values, now, NOTIFY_CHANNEL, references, statuses, reasons)
    return int(result["queued"]) if result is not None else 0


async def cap_references(
    conn: asyncpg.Connection, tenant: str, incident_ids: Sequence[str]
) -> dict[tuple[str, str], list[str]]:
    """The CAP alerts queued so far per (incident, endpoint), oldest first: what the next alert
    to that endpoint about that incident references."""
    rows = await conn.fetch(
        "SELECT incident_id, endpoint_id, cap_reference FROM escalation_deliveries"
        " WHERE tenant = $1 AND incident_id = ANY($2::text[]) AND cap_reference IS NOT NULL"
        # A held alert was never sent: the next one does not reference it.
        " AND status <> 'muted' ORDER BY seq",
        tenant,
        list(incident_ids),
    )
    out: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        out.setdefault((r["incident_id"], r["endpoint_id"]), []).append(r["cap_reference"])
    return out


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
        _CLAIM, now, limit, list(in_flight), list(in_flight.values()), per_endpoint, token, lease_until
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
    # failed (one more toward its breaker), or it is gone (a 410: disabled, with this reason).
    answered: bool
    disable_reason: str | None = None


# One statement, so one round trip: the attempts' rows (those still claimed by $7, the ids
# returned), and per endpoint what the batch did to it: `reset` when one answered (then `failures`
# are those after the last answer), the failures to add, the breaker's time if they reach $13, and
# a 410's reason to disable it. An outcome lost in a crash leaves the row claimed: it is attempted
# again when its lease ends, with the same webhook-id, which the receiver drops; so the commit
# need not wait for the WAL flush (`cfg`, local to this statement's transaction).
_FINISH_MANY = """
WITH cfg AS (SELECT set_config('synchronous_commit', 'off', true) AS off),
done AS (
    UPDATE escalation_deliveries d
    SET status = o.status, attempts = d.attempts + 1, due_at = coalesce(o.due, d.due_at), claim = NULL,
        delivered_at = o.delivered_at, last_status = o.http_status, last_error = o.error
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::int[], $6::text[])
         AS o(id, status, due, delivered_at, http_status, error)
    WHERE d.id = o.id AND d.claim = $7 AND d.status = 'sending'
    RETURNING d.id
),
endpoints AS (
    UPDATE escalation_endpoints e
    SET failures = CASE WHEN o.reset THEN o.failures ELSE e.failures + o.failures END,
        breaker_until = CASE
            WHEN o.disable IS NOT NULL THEN NULL
            WHEN (CASE WHEN o.reset THEN o.failures ELSE e.failures + o.failures END) >= $13 THEN $14
            WHEN o.reset THEN NULL
            ELSE e.breaker_until END,
        enabled = e.enabled AND o.disable IS NULL,
        disabled_reason = coalesce(o.disable, e.disabled_reason)
    FROM unnest($8::text[], $9::text[], $10::bool[], $11::int[], $12::text[])
         AS o(tenant, id, reset, failures, disable)
    WHERE e.tenant = o.tenant AND e.id = o.id
)
SELECT done.id FROM done, cfg
"""


async def finish_many(
    pool: asyncpg.Pool,
    done: Sequence[tuple[Claimed, Outcome]],
    token: str,
    *,
    breaker_after: int,
    breaker_until: datetime,
) -> set[str]:
    """Record a batch of attempts and their endpoints' breakers in one statement; the ids
    recorded (one whose claim was lost meanwhile is not)."""
    if not done:
        return set()
    per_endpoint: dict[tuple[str, str], list[Outcome]] = {}
    for delivery, outcome in done:
        per_endpoint.setdefault((delivery.tenant, delivery.endpoint_id), []).append(outcome)
    endpoints = []
    for (tenant, endpoint_id), outcomes in per_endpoint.items():
        answered = [i for i, o in enumerate(outcomes) if o.answered]
        after = outcomes[answered[-1] + 1 :] if answered else outcomes
        gone = next((o.disable_reason for o in outcomes if o.disable_reason is not None), None)
        endpoints.append((tenant, endpoint_id, bool(answered), len(after), gone))
    rows = await pool.fetch(
        _FINISH_MANY,
        [d.id for d, _ in done],
        [o.status for _, o in done],
        [o.due for _, o in done],
        [o.delivered_at for _, o in done],
        [o.http_status for _, o in done],
        [o.error[:2000] for _, o in done],
        token,
        [e[0] for e in endpoints],
        [e[1] for e in endpoints],
        [e[2] for e in endpoints],
        [e[3] for e in endpoints],
        [e[4] for e in endpoints],
        breaker_after,
        breaker_until,
    )
    return {r["id"] for r in rows}


async def release(pool: asyncpg.Pool, ids: Sequence[str], token: str, now: datetime) -> None:
    """Hand back deliveries claimed but not attempted (a stopping worker): due at once."""
    if ids:
        await pool.execute(_RELEASE, list(ids), token, now)


async def pending_count(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM escalation_deliveries WHERE status IN ('pending', 'sending')"
    )
    return count
