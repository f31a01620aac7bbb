"""Rows of the alarm engine's tables, written straight in for tests of what reads them (the read
API, the KPI query): the columns and meanings of services/alarms/migrations/0001_alarms.sql."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

_ids = itertools.count(1)


@dataclass(frozen=True)
class PointRow:
    tenant: str
    site: str
    device: str
    rule_id: str
    priority: str = "high"
    condition: str = "high"
    alarm_class: str = "safety"
    state: str = "NORM"
    active: bool = False
    latched: bool = False
    shelved_until: datetime | None = None
    flags: tuple[str, ...] = ()
    changed_at: datetime | None = None

    @property
    def alarm_id(self) -> str:
        return f"{self.device}--{self.rule_id}"


@dataclass(frozen=True)
class TransitionRow:
    point: PointRow
    at: datetime
    old_state: str
    new_state: str
    active: bool
    activation: bool = False
    returned: bool = False
    flags: tuple[str, ...] = ()
    observation_ids: tuple[str, ...] = ()
    action: str | None = None
    actor: str | None = None
    reason: str = ""
    timer: str | None = None
    id: str = field(default_factory=lambda: f"t-{next(_ids):08d}")


async def insert_points(conn: asyncpg.Pool | asyncpg.Connection, points: list[PointRow]) -> None:
    await conn.executemany(
        """
        INSERT INTO alarm_points (tenant, site, alarm_id, device, rule_id, condition, priority,
            alarm_class, state, active, latched, shelved_until, flags, changed_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
        """,
        [
            (
                p.tenant,
                p.site,
                p.alarm_id,
                p.device,
                p.rule_id,
                p.condition,
                p.priority,
                p.alarm_class,
                p.state,
                p.active,
                p.latched,
                p.shelved_until,
                list(p.flags),
                p.changed_at,
            )
            for p in points
        ],
    )


async def insert_transitions(conn: asyncpg.Pool | asyncpg.Connection, rows: list[TransitionRow]) -> None:
    await conn.executemany(
        """
        INSERT INTO alarm_transitions (id, tenant, site, alarm_id, rule_id, priority, alarm_class,
            at, old_state, new_state, active, observation_ids, timer, actor, action, reason, flags,
            activation, returned)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
        """,
        [
            (
                t.id,
                t.point.tenant,
                t.point.site,
                t.point.alarm_id,
                t.point.rule_id,
                t.point.priority,
                t.point.alarm_class,
                t.at,
                t.old_state,
                t.new_state,
                t.active,
                list(t.observation_ids),
                t.timer,
                t.actor,
                t.action,
                t.reason,
                list(t.flags),
                t.activation,
                t.returned,
            )
            for t in rows
        ],
    )


async def insert_flood(
    conn: asyncpg.Pool | asyncpg.Connection,
    *,
    tenant: str,
    site: str,
    began_at: datetime,
    ended_at: datetime | None,
    activations: int = 11,
) -> None:
    await conn.execute(
        "INSERT INTO alarm_floods (tenant, site, began_at, ended_at, activations)"
        " VALUES ($1, $2, $3, $4, $5)",
        tenant, site, began_at, ended_at, activations,
    )  # fmt: skip
