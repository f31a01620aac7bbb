"""Schema migrations against a real PostgreSQL: once each, also when processes start together."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.common.db import migrations
from services.common.db.pool import create_pool
from services.hub.registry import REGISTRY

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    yield pool
    await pool.close()


def keys(applied: list[migrations.Migration]) -> list[tuple[str, int]]:
    return [(m.component, m.version) for m in applied]


async def recorded(pool: asyncpg.Pool) -> list[tuple[str, int, str]]:
    rows = await pool.fetch(
        "SELECT component, version, name FROM safetyhub_schema_migrations ORDER BY component, version"
    )
    return [(r["component"], r["version"], r["name"]) for r in rows]


async def test_a_fresh_database_gets_every_table_and_each_version_recorded_once(pool: asyncpg.Pool) -> None:
    wanted = REGISTRY.migrations()
    components = {m.component for m in wanted}
    assert components == {
        "auth",
        "store",
        "outbox",
        "audit",
        "alarms",
        "incidents",
        "escalation",
        "video",
        "feed",
    }

    applied = await migrations.apply(pool, wanted)

    assert keys(applied) == keys(wanted)
    assert await recorded(pool) == sorted((m.component, m.version, m.name) for m in wanted)
    for table in (
        "api_keys",
        "hub_signing_keys",
        "audit_log",
        "observations",
        "observations_default",
        "outbox",
        "processed_messages",
        "alarm_points",
        "alarm_transitions",
        "alarm_floods",
        "alarm_sites",
        "incidents",
        "incident_sites",
        "incident_timeline",
        "incident_attachments",
        "escalation_endpoints",
        "escalation_deliveries",
        "escalation_policies",
        "escalation_climbs",
        "escalation_maintenance_windows",
        "escalation_held",
        "video_snapshots",
        "feed_policies",
        "feed_exports",
        "feed_pending",
        "feed_counts",
        "feed_count_hours",
        "feed_ngsi_pending",
        "feed_ngsi_dead",
        "feed_incident_versions",
        "feed_handover",
    ):
        assert await pool.fetchval("SELECT to_regclass($1) IS NOT NULL", table), table
    async with pool.acquire() as conn:
        assert await migrations.pending(conn, wanted) == []


async def test_applying_again_applies_nothing(pool: asyncpg.Pool) -> None:
    await migrations.apply(pool, REGISTRY.migrations())
    before = await recorded(pool)

    assert await migrations.apply(pool, REGISTRY.migrations()) == []
    assert await recorded(pool) == before


async def test_pending_lists_everything_on_an_empty_database(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert keys(await migrations.pending(conn, REGISTRY.migrations())) == keys(REGISTRY.migrations())


async def test_processes_starting_together_apply_each_migration_exactly_once(database_url: str) -> None:
    # One pool per "process"; the advisory lock, not luck, must keep them from both applying.
    pools = [await create_pool(database_url, min_size=1, max_size=1) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrations.apply(p, REGISTRY.migrations()) for p in pools))
        applied = Counter(key for result in results for key in keys(result))
        assert applied == Counter(keys(REGISTRY.migrations())), "each migration applied by exactly one"
        assert sum(1 for result in results if result) == 1, "the first to take the lock applies all"
        assert len(await recorded(pools[0])) == len(REGISTRY.migrations())
        async with pools[0].acquire() as conn:
            assert await migrations.pending(conn, REGISTRY.migrations()) == []
    finally:
        for p in pools:
            await p.close()


async def test_a_failing_migration_leaves_nothing_half_applied(pool: asyncpg.Pool, database_url: str) -> None:
    broken = migrations.Migration("broken", 1, "two_statements", "CREATE TABLE half (id int); SELECT 1/0;")

    with pytest.raises(migrations.MigrationError, match=re.escape("broken 0001_two_statements.sql")):
        await migrations.apply(pool, [*REGISTRY.migrations(), broken])

    assert await pool.fetchval("SELECT to_regclass('half') IS NULL"), "the failed file rolled back"
    assert len(await recorded(pool)) == len(REGISTRY.migrations()), "earlier files stay applied"
    async with pool.acquire() as conn:
        assert keys(await migrations.pending(conn, [*REGISTRY.migrations(), broken])) == [("broken", 1)]
    # The advisory lock was released: another process starting now is not blocked behind it.
    other = await create_pool(database_url, min_size=1, max_size=1)
    try:
        assert await asyncio.wait_for(migrations.apply(other, REGISTRY.migrations()), timeout=5) == []
    finally:
        await other.close()
