"""Migrations 0002 and 0003 on a database that already holds observations in daily partitions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.common.db import migrations
from services.common.db.pool import create_pool
from services.hub.registry import REGISTRY
from services.store.partitions import ensure_partitions

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
INSERT = (
    "INSERT INTO observations (id, time, tenant, site, device, kind, value, received)"
    " VALUES ($1, $2, $3, 'refinery', 'gd-101', 'gas.h2s', $4, $2) ON CONFLICT DO NOTHING"
)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def key_columns(conn: asyncpg.Pool, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT a.attname FROM pg_index i"
        " JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
        " WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY k.n",
        table,
    )
    return [r["attname"] for r in rows]


# The identity (tenant, id, time), in the order that keeps inserts at the index's right edge (0003).
KEY = ["time", "tenant", "id"]


async def test_the_key_becomes_tenant_id_time_on_every_partition_and_keeps_the_rows(
    pool: asyncpg.Pool,
) -> None:
    before = [m for m in REGISTRY.migrations() if not (m.component == "store" and m.version >= 2)]
    await migrations.apply(pool, before)
    await ensure_partitions(pool, NOW.date())
    await pool.execute(INSERT, "shared-id-1", NOW, "acme", 1.0)
    await pool.execute(INSERT, "shared-id-1", NOW - timedelta(days=40), "acme", 2.0)  # default partition
    await pool.execute(INSERT, "shared-id-1", NOW, "mipo", 3.0)
    assert await pool.fetchval("SELECT count(*) FROM observations") == 2, "the old key ignored the tenant"

    await migrations.apply(pool, REGISTRY.migrations())

    today = f"observations_p{NOW:%Y%m%d}"
    for table in ("observations", today, "observations_default"):
        assert await key_columns(pool, table) == KEY, table
    await pool.execute(INSERT, "shared-id-1", NOW, "mipo", 3.0)
    await pool.execute(INSERT, "shared-id-1", NOW, "acme", 4.0)  # a retry: the first copy stays
    got = await pool.fetch("SELECT tenant, time, value FROM observations ORDER BY tenant, time")
    assert [(r["tenant"], r["value"]) for r in got] == [("acme", 2.0), ("acme", 1.0), ("mipo", 3.0)]


async def test_reordering_the_key_keeps_every_row_and_the_identity_rules(pool: asyncpg.Pool) -> None:
    before = [m for m in REGISTRY.migrations() if not (m.component == "store" and m.version >= 3)]
    await migrations.apply(pool, before)
    await ensure_partitions(pool, NOW.date())
    yesterday = NOW - timedelta(days=1)
    rows = [
        ("shared-id-1", NOW, "acme", 1.0),
        ("shared-id-1", NOW, "mipo", 2.0),
        ("shared-id-1", yesterday, "acme", 3.0),  # another partition
        ("shared-id-1", NOW - timedelta(days=40), "acme", 4.0),  # the default partition
        ("other-id", NOW, "acme", 5.0),
    ]
    for row in rows:
        await pool.execute(INSERT, *row)
    today = f"observations_p{NOW:%Y%m%d}"
    assert await key_columns(pool, today) == ["tenant", "id", "time"]

    await migrations.apply(pool, REGISTRY.migrations())

    partitions = [f"observations_p{yesterday:%Y%m%d}", today, "observations_default"]
    for table in ["observations", *partitions]:
        assert await key_columns(pool, table) == KEY, table
    # Retries of every stored row, in each tenant and partition: the first copies stay.
    for id_, moment, tenant, value in rows:
        await pool.execute(INSERT, id_, moment, tenant, value + 100)
    # New readings: the same id at a new time, and in a third tenant.
    await pool.execute(INSERT, "shared-id-1", NOW + timedelta(seconds=1), "acme", 6.0)
    await pool.execute(INSERT, "shared-id-1", NOW, "third", 7.0)
    got = await pool.fetch("SELECT id, time, tenant, value FROM observations ORDER BY value")
    expected = [
        *rows,
        ("shared-id-1", NOW + timedelta(seconds=1), "acme", 6.0),
        ("shared-id-1", NOW, "third", 7.0),
    ]
    assert [(r["id"], r["time"], r["tenant"], r["value"]) for r in got] == expected
