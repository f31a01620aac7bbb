"""Observation history is kept for `store.retention_days`, then dropped a whole day at a time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from services.store.partitions import drop_expired, ensure_partitions, expired, partition_name

pytestmark = pytest.mark.integration
TODAY = date(2026, 11, 22)


@pytest.fixture
def pool(migrated_pool: asyncpg.Pool) -> asyncpg.Pool:
    return migrated_pool


async def _insert(pool: asyncpg.Pool, row_id: str, day: date) -> None:
    moment = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    await pool.execute(
        "INSERT INTO observations (id, time, tenant, site, device, kind, value, received)"
        " VALUES ($1, $2, 'ulsan-refining', 'ulsan-refinery', 'gd-cdu1-101', 'gas.h2s', 1.0, $2)",
        row_id,
        moment,
    )


async def test_partitions_past_retention_are_dropped_and_recent_rows_kept(pool: asyncpg.Pool) -> None:
    await ensure_partitions(pool, TODAY)  # a fresh database: a week back to three days ahead
    await _insert(pool, "six-days-old", TODAY - timedelta(days=6))
    await _insert(pool, "two-days-old", TODAY - timedelta(days=2))
    await _insert(pool, "sixty-days-old", TODAY - timedelta(days=60))  # late backfill: default partition

    dropped = await drop_expired(pool, TODAY, retention_days=3)

    assert partition_name(TODAY - timedelta(days=6)) in dropped
    assert partition_name(TODAY - timedelta(days=3)) not in dropped  # the cutoff day is kept
    ids = {r["id"] for r in await pool.fetch("SELECT id FROM observations")}
    assert ids == {"two-days-old"}
    assert await drop_expired(pool, TODAY, retention_days=3) == []  # nothing more to do


async def test_retention_zero_keeps_everything(pool: asyncpg.Pool) -> None:
    await ensure_partitions(pool, TODAY)
    await _insert(pool, "old", TODAY - timedelta(days=7))
    assert await drop_expired(pool, TODAY, retention_days=0) == []
    assert await pool.fetchval("SELECT count(*) FROM observations") == 1


def test_only_daily_partitions_older_than_the_window_expire() -> None:
    names = ["observations_p20261101", "observations_p20261119", "observations_default", "observations_p2026"]
    assert expired(names, TODAY, 30) == []
    assert expired(names, TODAY, 2) == ["observations_p20261101", "observations_p20261119"]
    assert expired(names, TODAY, 3) == ["observations_p20261101"]
    assert expired(names, TODAY, 21) == []
