"""Schema migrations: plain numbered SQL files per component, applied in order, once.

Each component (a service, or the shared key store) owns its tables and ships them as
`migrations/NNNN_name.sql` next to its code. `apply` runs the missing ones, each in its own
transaction, under a PostgreSQL advisory lock so that several processes starting together never
apply one twice. The version table records component, version, name and time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from services.common.errors import SafetyhubError
from services.common.logging import get_logger

log = get_logger(__name__)

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any fixed 64-bit number; it names "safetyhub migrations" among the advisory locks.
_LOCK_KEY = 0x5AFE_4B
_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS safetyhub_schema_migrations (
    component  text        NOT NULL,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)
"""


class MigrationError(SafetyhubError):
    pass


@dataclass(frozen=True, slots=True)
class Migration:
    component: str
    version: int
    name: str
    sql: str


def discover(component: str, package: str) -> list[Migration]:
    """The migrations shipped in `<package>/migrations/`, ordered by version."""
    found: list[Migration] = []
    folder = resources.files(package) / "migrations"
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match is None:
            continue
        found.append(Migration(component, int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{package}: two migrations share a version number: {versions}")
    return found


async def pending(conn: asyncpg.Connection, migrations: list[Migration]) -> list[Migration]:
    exists = await conn.fetchval("SELECT to_regclass('safetyhub_schema_migrations') IS NOT NULL")
    if not exists:
        return list(migrations)
    rows = await conn.fetch("SELECT component, version FROM safetyhub_schema_migrations")
    done = {(r["component"], r["version"]) for r in rows}
    return [m for m in migrations if (m.component, m.version) not in done]


async def apply(pool: asyncpg.Pool, migrations: list[Migration]) -> list[Migration]:
    """Apply what is missing; return what was applied now."""
    applied: list[Migration] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(_VERSION_TABLE)
            for migration in await pending(conn, migrations):
                async with conn.transaction():
                    try:
                        await conn.execute(migration.sql)
                    except asyncpg.PostgresError as err:
                        raise MigrationError(
                            f"{migration.component} {migration.version:04d}_{migration.name}.sql: {err}"
                        ) from err
                    await conn.execute(
                        "INSERT INTO safetyhub_schema_migrations (component, version, name)"
                        " VALUES ($1, $2, $3)",
                        migration.component,
                        migration.version,
                        migration.name,
                    )
                applied.append(migration)
                log.info(
                    "migration_applied",
                    component=migration.component,
                    version=migration.version,
                    name=migration.name,
                )
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied
