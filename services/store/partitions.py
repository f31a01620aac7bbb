"""Daily partitions of `observations`, created ahead of time.

Partitions exist from a week back (on a fresh database) to three days ahead; the store calls
`ensure_partitions` at start and hourly. Only days at or after today are added later, so the
default partition never holds rows of a day that is then given a partition of its own.
"""

from __future__ import annotations

from datetime import date, timedelta

import asyncpg

from services.common.logging import get_logger

log = get_logger(__name__)


def partition_name(day: date) -> str:
    return f"observations_p{day:%Y%m%d}"


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
