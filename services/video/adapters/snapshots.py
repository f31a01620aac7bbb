"""Snapshots in PostgreSQL: written in the unit of work that emits their observation, read by ref."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

_INSERT = """
INSERT INTO video_snapshots (ref, tenant, site, device, taken, jpeg, blurred, faces)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (ref) DO NOTHING
"""
_PURGE = "DELETE FROM video_snapshots WHERE taken < now() - make_interval(days => $1)"
_SELECT = "SELECT tenant, site, device, taken, {column} AS image FROM video_snapshots WHERE ref = $1"


@dataclass(frozen=True, slots=True)
class Snapshot:
    ref: str
    tenant: str
    site: str
    device: str
    taken: datetime
    jpeg: bytes
    blurred: bytes
    faces: int


@dataclass(frozen=True, slots=True)
class StoredImage:
    tenant: str
    site: str
    device: str
    taken: datetime
    image: bytes


async def insert(connection: asyncpg.Connection, snapshot: Snapshot) -> None:
    await connection.execute(
        _INSERT,
        snapshot.ref,
        snapshot.tenant,
        snapshot.site,
        snapshot.device,
        snapshot.taken,
        snapshot.jpeg,
        snapshot.blurred,
        snapshot.faces,
    )


async def fetch(pool: asyncpg.Pool, ref: str, *, blurred: bool) -> StoredImage | None:
    row = await pool.fetchrow(_SELECT.format(column="blurred" if blurred else "jpeg"), ref)
    if row is None:
        return None
    return StoredImage(row["tenant"], row["site"], row["device"], row["taken"], bytes(row["image"]))


async def purge(connection: asyncpg.Connection, retention_days: int) -> int:
    """Delete the snapshots taken more than `retention_days` ago; how many were."""
    status = await connection.execute(_PURGE, retention_days)
    return int(status.split()[-1])
