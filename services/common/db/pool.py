"""The one asyncpg pool of a process."""

from __future__ import annotations

import asyncpg

from services.common.errors import UnavailableError

# Errors meaning "the database is not there right now", as opposed to a bug or bad data.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.InterfaceError,
)


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    try:
        pool: asyncpg.Pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max(min_size, max_size), command_timeout=60
        )
    except TRANSIENT_DB_ERRORS as err:
        raise UnavailableError(f"PostgreSQL is unreachable: {err}") from err
    return pool
