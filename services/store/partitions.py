"""Daily partitions of `observations`: created ahead of time, dropped when past retention.

Partitions exist from a week back (on a fresh database) to three days ahead; the store calls
`ensure_partitions` at start and hourly. Only days at or after today are added later, so the
default partition never holds rows of a day that is then given a partition of its own.
Retention drops whole partitions (no row-by-row delete, no vacuum debt); only the default
partition, which holds late backfill, is cleaned by DELETE.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import asyncpg

from services.common.logging import get_logger

log = get_logger(__name__)


def partition_name(day: date) -> str:
    return f"observations_p{day:%Y%m%d}"


_PARTITION = re.compile(r"^observations_p(\d{8})$")


def expired(names: list[str], today: date, retention_days: int) -> list[str]:
    """The daily partitions entirely older than the retention window."""
    if retention_days <= 0:
        return []
    cutoff = today - timedelta(days=retention_days)
    old = []
    for name in names:
        match = _PARTITION.match(name)
        if match and datetime.strptime(match.group(1), "%Y%m%d").date() < cutoff:
            old.append(name)
    return sorted(old)


async def drop_expired(pool: asyncpg.Pool, today: date, retention_days: int) -> list[str]:
    """Drop partitions past retention and delete expired rows of the default partition."""
    if retention_days <= 0:
        return []
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'observations'::regclass"
        )
        dropped = expired([r["relname"] for r in rows], today, retention_days)
        for name in dropped:
            await conn.execute(f"DROP TABLE IF EXISTS {name}")
        cutoff = today - timedelta(days=retention_days)
        await conn.execute("DELETE FROM observations_default WHERE time < $1::date", cutoff)
    if dropped:
        log.info("partitions_dropped", partitions=dropped, retention_days=retention_days)
    return dropped


def days_to_prepare(today: date, *, fresh: bool, ahead: int = 3, back: int = 7) -> list[date]:
    first = today - timedelta(days=back) if fresh else today
    return [first + timedelta(days=n) for n in range((today - first).days + ahead + 1)]


async def ensure_partitions(pool: asyncpg.Pool, today: date) -> int:
    """Create missing daily partitions; return how many were created."""
    async with pool.acquire() as conn:
        existing = await conn.fetchval(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'observations'::regclass"
        )
        fresh = existing <= 1  # only the default partition
        created = 0
        for day in days_to_prepare(today, fresh=fresh):
            name = partition_name(day)
            if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
                continue
            try:
                await conn.execute(
                    f"CREATE TABLE {name} PARTITION OF observations FOR VALUES"
                    f" FROM ('{day.isoformat()} 00:00:00+00') TO ('{day + timedelta(days=1)} 00:00:00+00')"
                )
                created += 1
            except asyncpg.exceptions.DuplicateTableError:
                pass  # another store worker made it first
            except asyncpg.PostgresError as err:
                # e.g. the default partition already holds rows of that day: they stay there.
                log.warning("partition_not_created", partition=name, error=str(err))
    if created:
        log.info("partitions_created", count=created)
    return created
