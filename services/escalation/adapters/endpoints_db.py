"""The endpoints table: rows in and out, and the endpoints an incident change goes to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from services.escalation.domain.endpoint import Filter

_COLUMNS = """
tenant, id, name, url, format, language, sites, min_severity, types, headers::text AS headers,
secret, previous_secret, previous_until, enabled, disabled_reason, failures, breaker_until,
created_at, updated_at, deleted_at
"""


@dataclass(slots=True, kw_only=True)
class EndpointRow:
    tenant: str
    id: str
    name: str
    url: str
    format: str
    language: str
    sites: list[str] | None
    min_severity: str
    types: list[str] | None
    headers: dict[str, str]
    secret: str
    previous_secret: str | None
    previous_until: datetime | None
    enabled: bool
    disabled_reason: str
    failures: int
    breaker_until: datetime | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None

    @classmethod
    def of(cls, row: asyncpg.Record) -> EndpointRow:
        values: dict[str, Any] = dict(row)
        values["headers"] = msgspec.json.decode(values["headers"])
        return cls(**values)

    @property
    def filter(self) -> Filter:
        return Filter(
            sites=frozenset(self.sites) if self.sites is not None else None,
            min_severity=self.min_severity,
            types=frozenset(self.types) if self.types is not None else None,
        )

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets a delivery at `now` is signed with: the current, and the previous during
        its overlap."""
        if self.previous_secret and self.previous_until is not None and now < self.previous_until:
            return [self.secret, self.previous_secret]
        return [self.secret]


_INSERT = """
INSERT INTO escalation_endpoints (tenant, id, name, url, format, language, sites, min_severity,
                                  types, headers, secret, created_at, updated_at, enabled)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $12, $13)
"""
_UPDATE = """
UPDATE escalation_endpoints SET name = $3, url = $4, format = $5, language = $6, sites = $7,
    min_severity = $8, types = $9, headers = $10::jsonb, enabled = $11, disabled_reason = $12,
    failures = $13, breaker_until = $14, updated_at = $15
WHERE tenant = $1 AND id = $2
"""


async def insert(conn: asyncpg.Connection, e: EndpointRow) -> None:
    await conn.execute(
        _INSERT,
        e.tenant,
        e.id,
        e.name,
        e.url,
        e.format,
        e.language,
        e.sites,
        e.min_severity,
        e.types,
        msgspec.json.encode(e.headers).decode(),
        e.secret,
        e.created_at,
        e.enabled,
    )


async def update(conn: asyncpg.Connection, e: EndpointRow) -> None:
    await conn.execute(
        _UPDATE,
        e.tenant,
        e.id,
        e.name,
        e.url,
        e.format,
        e.language,
        e.sites,
        e.min_severity,
        e.types,
        msgspec.json.encode(e.headers).decode(),
        e.enabled,
        e.disabled_reason,
        e.failures,
        e.breaker_until,
        e.updated_at,
    )


async def rotate(conn: asyncpg.Connection, e: EndpointRow, secret: str, overlap_until: datetime) -> None:
    await conn.execute(
        """
        UPDATE escalation_endpoints
        SET previous_secret = secret, previous_until = $4, secret = $3, updated_at = $5
        WHERE tenant = $1 AND id = $2
        """,
        e.tenant,
        e.id,
        secret,
        overlap_until,
        e.updated_at,
    )


async def delete(conn: asyncpg.Connection, tenant: str, endpoint_id: str, at: datetime) -> int:
    """Mark it deleted and cancel what was still to be sent to it; the number cancelled."""
    await conn.execute(
        "UPDATE escalation_endpoints SET deleted_at = $3, enabled = false, updated_at = $3"
        " WHERE tenant = $1 AND id = $2",
        tenant,
        endpoint_id,
        at,
    )
    status: str = await conn.execute(
        """
        UPDATE escalation_deliveries SET status = 'cancelled', claim = NULL,
            last_error = 'the endpoint was deleted'
        WHERE tenant = $1 AND endpoint_id = $2 AND status IN ('pending', 'sending')
        """,
        tenant,
        endpoint_id,
    )
    return int(status.rsplit(" ", 1)[1])


async def load(
    conn: asyncpg.Connection | asyncpg.Pool, tenant: str, endpoint_id: str, *, lock: bool = False
) -> EndpointRow | None:
    query = (
        f"SELECT {_COLUMNS} FROM escalation_endpoints WHERE tenant = $1 AND id = $2 AND deleted_at IS NULL"
    )
    row = await conn.fetchrow(query + (" FOR UPDATE" if lock else ""), tenant, endpoint_id)
    return EndpointRow.of(row) if row is not None else None


async def of_tenant(conn: asyncpg.Connection | asyncpg.Pool, tenant: str) -> list[EndpointRow]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM escalation_endpoints WHERE tenant = $1 AND deleted_at IS NULL ORDER BY id",
        tenant,
    )
    return [EndpointRow.of(r) for r in rows]


async def of_tenants(conn: asyncpg.Connection, tenants: Sequence[str]) -> dict[str, list[EndpointRow]]:
    """The live endpoints (enabled or not) of each tenant, for fanning a batch of changes out."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM escalation_endpoints"
        " WHERE tenant = ANY($1::text[]) AND deleted_at IS NULL ORDER BY id",
        list(tenants),
    )
    found: dict[str, list[EndpointRow]] = {t: [] for t in tenants}
    for row in rows:
        found[row["tenant"]].append(EndpointRow.of(row))
    return found
