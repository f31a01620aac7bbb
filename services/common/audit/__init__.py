"""The audit trail: who did what, why, when and from where.

An action and its audit row commit together: `record` takes the connection of the caller's
transaction (a unit of work's `uow.connection`, or a connection in `async with conn.transaction()`),
so a rolled-back action leaves no row and a committed one always has its row.

    async with outbox.unit_of_work() as uow:
        await uow.connection.execute("UPDATE alarms SET state = 'ACKED' WHERE id = $1", alarm)
        await record(uow.connection, AuditEntry.by(principal, "alarm.acknowledged", target=alarm,
                                                   reason=reason, source=request.remote))

Every row is also logged (`audit_recorded`), so a log pipeline sees the same trail.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import asyncpg
import msgspec

from services.common.auth.principal import Principal
from services.common.logging import get_logger

log = get_logger(__name__)

ActorKind = Literal["person", "key", "command", "service", "link"]

_INSERT = """
INSERT INTO audit_log (tenant, actor, actor_kind, action, target, reason, source, request_id, detail)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)
RETURNING id, at
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    actor: str
    actor_kind: ActorKind
    action: str  # dotted, noun first: "key.created", "token.issued", "alarm.acknowledged"
    tenant: str | None = None
    target: str | None = None
    reason: str = ""
    source: str | None = None
    request_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def by(cls, principal: Principal, action: str, **fields: Any) -> AuditEntry:
        """An action of the person or key the request was authenticated as, in its tenant."""
        fields.setdefault("tenant", principal.tenant)
        return cls(actor=principal.actor, actor_kind=principal.kind, action=action, **fields)


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """Who acts, before the action is known: a request's principal or a command's user."""

    actor: str
    actor_kind: ActorKind
    source: str | None = None
    request_id: str | None = None

    @classmethod
    def of(cls, principal: Principal, *, source: str | None = None, request_id: str | None = None) -> Actor:
        return cls(actor=principal.actor, actor_kind=principal.kind, source=source, request_id=request_id)

    @classmethod
    def command(cls) -> Actor:
        """The operating-system user running `safetyhub` on this host."""
        return cls(actor=_os_user(), actor_kind="command", source=socket.gethostname())

    def entry(self, action: str, **fields: Any) -> AuditEntry:
        return AuditEntry(
            actor=self.actor,
            actor_kind=self.actor_kind,
            action=action,
            source=self.source,
            request_id=self.request_id,
            **fields,
        )


@contextlib.asynccontextmanager
async def transaction(conn: asyncpg.Connection | asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A transaction on `conn` (a savepoint inside the caller's), or on a connection of the pool."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as acquired, acquired.transaction():
            yield acquired
    else:
        async with conn.transaction():
            yield conn


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: datetime
    entry: AuditEntry


async def record(conn: asyncpg.Connection, entry: AuditEntry) -> AuditRecord:
    """Insert `entry` in the caller's transaction (if any) and log it; returns the stored row's id."""
    row = await conn.fetchrow(
        _INSERT,
        entry.tenant,
        entry.actor,
        entry.actor_kind,
        entry.action,
        entry.target,
        entry.reason,
        entry.source,
        entry.request_id,
        msgspec.json.encode(dict(entry.detail)).decode(),
    )
    assert row is not None  # INSERT ... RETURNING returns its row
    log.info(
        "audit_recorded",
        action=entry.action,
        actor=entry.actor,
        actor_kind=entry.actor_kind,
        tenant=entry.tenant,
        target=entry.target,
        audit_id=row["id"],
    )
    return AuditRecord(row["id"], row["at"], entry)


async def entries(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    tenant: str | None = None,
    target: str | None = None,
    limit: int = 100,
) -> list[AuditRecord]:
    """The latest rows, newest first, of one tenant and/or target (all when None)."""
    rows = await conn.fetch(
        "SELECT * FROM audit_log WHERE ($1::text IS NULL OR tenant = $1)"
        " AND ($2::text IS NULL OR target = $2) ORDER BY id DESC LIMIT $3",
        tenant,
        target,
        limit,
    )
    return [
        AuditRecord(
            row["id"],
            row["at"],
            AuditEntry(
                actor=row["actor"],
                actor_kind=row["actor_kind"],
                action=row["action"],
                tenant=row["tenant"],
                target=row["target"],
                reason=row["reason"],
                source=row["source"],
                request_id=row["request_id"],
                detail=msgspec.json.decode(row["detail"])
                if isinstance(row["detail"], str)
                else row["detail"],
            ),
        )
        for row in rows
    ]


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container's uid without a passwd entry
        return f"uid:{os.getuid()}"
