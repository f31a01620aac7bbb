"""The acknowledgement links used (`incident_ack_links`), and who acknowledged an incident."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.incidents.ack_token import AckClaims

_USED = "SELECT used_by, used_at FROM incident_ack_links WHERE jti = $1"
_RECORD = """
INSERT INTO incident_ack_links (jti, tenant, incident_id, endpoint_id, used_by, used_at, source)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
# The latest acknowledgement (or taking it straight to dispatched) in the incident's timeline.
_ACKNOWLEDGED_BY = """
SELECT actor, at FROM incident_timeline
WHERE tenant = $1 AND incident_id = $2 AND change IN ('acknowledged', 'dispatched')
ORDER BY seq DESC LIMIT 1
"""


@dataclass(frozen=True, slots=True)
class UsedLink:
    used_by: str
    used_at: datetime


async def used(conn: asyncpg.Connection, jti: str) -> UsedLink | None:
    row = await conn.fetchrow(_USED, jti)
    return None if row is None else UsedLink(row["used_by"], row["used_at"])


async def record_use(
    conn: asyncpg.Connection, claims: AckClaims, *, used_at: datetime, source: str | None
) -> None:
    """The link's id as used (its primary key: a second use in a racing transaction fails)."""
    await conn.execute(
        _RECORD,
        claims.jti,
        claims.tenant,
        claims.incident_id,
        claims.endpoint_id,
        claims.actor,
        used_at,
        source,
    )


async def acknowledged_by(
    conn: asyncpg.Connection, tenant: str, incident_id: str
) -> tuple[str, datetime] | None:
    row = await conn.fetchrow(_ACKNOWLEDGED_BY, tenant, incident_id)
    return None if row is None else (str(row["actor"]), row["at"])
