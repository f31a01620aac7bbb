"""The policies and climbs tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from services.escalation.domain.policy import Climb, Policy, Step


class StepJson(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    endpoints: list[str]
    wait_s: float
    repeat: int = 0
    next: int | None = None


_STEPS = msgspec.json.Decoder(list[StepJson])
_DEADLINES = msgspec.json.Decoder(dict[str, float])
_POLICY_COLUMNS = (
    "tenant, id, name, position, sites, types, min_severity, ack_deadlines::text AS ack_deadlines,"
    " steps::text AS steps, created_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class PolicyRow:
    policy: Policy
    name: str
    created_at: datetime
    updated_at: datetime


def steps_of(steps: Sequence[StepJson]) -> tuple[Step, ...]:
    return tuple(
        Step(endpoints=tuple(s.endpoints), wait_s=s.wait_s, repeat=s.repeat, next=s.next) for s in steps
    )


def steps_json(steps: Sequence[Step]) -> list[dict[str, Any]]:
    return [
        {"endpoints": list(s.endpoints), "waitS": s.wait_s, "repeat": s.repeat, "next": s.next} for s in steps
    ]


def _row(r: asyncpg.Record) -> PolicyRow:
    policy = Policy(
        id=r["id"],
        tenant=r["tenant"],
        steps=steps_of(_STEPS.decode(r["steps"])),
        sites=frozenset(r["sites"]) if r["sites"] is not None else None,
        types=frozenset(r["types"]) if r["types"] is not None else None,
        min_severity=r["min_severity"],
        ack_deadlines_s=_DEADLINES.decode(r["ack_deadlines"]),
        position=r["position"],
    )
    return PolicyRow(policy, r["name"], r["created_at"], r["updated_at"])


async def save(conn: asyncpg.Connection, row: PolicyRow) -> None:
    p = row.policy
    await conn.execute(
        """
        INSERT INTO escalation_policies (tenant, id, name, position, sites, types, min_severity,
                                         ack_deadlines, steps, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10, $11)
        ON CONFLICT (tenant, id) DO UPDATE SET name = EXCLUDED.name, position = EXCLUDED.position,
            sites = EXCLUDED.sites, types = EXCLUDED.types, min_severity = EXCLUDED.min_severity,
            ack_deadlines = EXCLUDED.ack_deadlines, steps = EXCLUDED.steps, updated_at = EXCLUDED.updated_at
        """,
        p.tenant,
        p.id,
        row.name,
        p.position,
        sorted(p.sites) if p.sites is not None else None,
        sorted(p.types) if p.types is not None else None,
        p.min_severity,
        msgspec.json.encode(dict(p.ack_deadlines_s)).decode(),
        msgspec.json.encode(steps_json(p.steps)).decode(),
        row.created_at,
        row.updated_at,
    )


async def of_tenant(conn: asyncpg.Connection | asyncpg.Pool, tenant: str) -> list[PolicyRow]:
    rows = await conn.fetch(
        f"SELECT {_POLICY_COLUMNS} FROM escalation_policies WHERE tenant = $1 ORDER BY position, id", tenant
    )
    return [_row(r) for r in rows]


async def load(
    conn: asyncpg.Connection, tenant: str, policy_id: str, *, lock: bool = False
) -> PolicyRow | None:
    row = await conn.fetchrow(
        f"SELECT {_POLICY_COLUMNS} FROM escalation_policies WHERE tenant = $1 AND id = $2"
        + (" FOR UPDATE" if lock else ""),
        tenant,
        policy_id,
    )
    return _row(row) if row is not None else None


async def delete(conn: asyncpg.Connection, tenant: str, policy_id: str) -> None:
    await conn.execute("DELETE FROM escalation_policies WHERE tenant = $1 AND id = $2", tenant, policy_id)


# ---------------------------------------------------------------------------- climbs


@dataclass(slots=True)
class ClimbRow:
    tenant: str
    site: str
    climb: Climb
    severity: str
    version: int
    latest: bytes


def _climb(r: asyncpg.Record) -> ClimbRow:
    climb = Climb(r["incident_id"], r["policy_id"], r["step"], r["round"], r["due_at"], r["stopped"])
    return ClimbRow(r["tenant"], r["site"], climb, r["severity"], r["version"], bytes(r["latest"]))


_CLIMB_COLUMNS = (
    "tenant, incident_id, site, policy_id, step, round, due_at, stopped, severity, version, latest"
)


async def climbs_of(
    conn: asyncpg.Connection, tenant: str, incident_ids: Sequence[str]
) -> dict[str, ClimbRow]:
    rows = await conn.fetch(
        f"SELECT {_CLIMB_COLUMNS} FROM escalation_climbs WHERE tenant = $1 AND incident_id = ANY($2::text[])"
        " FOR UPDATE",
        tenant,
        list(incident_ids),
    )
    return {r["incident_id"]: _climb(r) for r in rows}


async def due_climbs(conn: asyncpg.Connection, now: datetime, limit: int) -> list[ClimbRow]:
    """Climbs due now, locked for this transaction; those another worker holds are skipped."""
    rows = await conn.fetch(
        f"SELECT {_CLIMB_COLUMNS} FROM escalation_climbs WHERE due_at IS NOT NULL AND due_at <= $1"
        " ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [_climb(r) for r in rows]


async def save_climb(conn: asyncpg.Connection, row: ClimbRow) -> None:
    c = row.climb
    await conn.execute(
        """
        INSERT INTO escalation_climbs (tenant, incident_id, site, policy_id, step, round, due_at, stopped,
                                       severity, version, latest)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (tenant, incident_id) DO UPDATE SET policy_id = EXCLUDED.policy_id,
            step = EXCLUDED.step, round = EXCLUDED.round, due_at = EXCLUDED.due_at,
            stopped = EXCLUDED.stopped, severity = EXCLUDED.severity, version = EXCLUDED.version,
            latest = EXCLUDED.latest
        """,
        row.tenant,
        c.incident_id,
        row.site,
        c.policy_id,
        c.step,
        c.round,
        c.due,
        c.stopped,
        row.severity,
        row.version,
        row.latest,
    )


async def policies_by_id(
    conn: asyncpg.Connection, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], Policy]:
    if not keys:
        return {}
    tenants, ids = zip(*sorted(keys), strict=True)
    rows = await conn.fetch(
        f"SELECT {_POLICY_COLUMNS} FROM escalation_policies"
        " WHERE (tenant, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        list(tenants),
        list(ids),
    )
    return {(r["tenant"], r["id"]): _row(r).policy for r in rows}
