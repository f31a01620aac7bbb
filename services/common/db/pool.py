"""The one asyncpg pool of a process, and a time bound that holds even against a frozen server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import asyncpg

from services.common.errors import UnavailableError

T = TypeVar("T")

# Errors meaning "the database is not there right now", as opposed to a bug or bad data.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,  # class 08, ConnectionDoesNotExistError among them
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.InterfaceError,
    # What a pooled connection raises when its server was killed mid-query ("cannot switch to
    # state 12; another operation (2) is in progress"): the connection is lost, not the data bad.
    asyncpg.exceptions.InternalClientError,
)

# Opening a connection (TCP, startup, SCRAM) takes milliseconds; asyncpg's default waits 60 s,
# which a pool refilling itself against a frozen server would spend on every new connection.
CONNECT_TIMEOUT_S = 10.0

# Work given up by `bounded`, kept referenced until it has ended (a task only weakly referenced
# by the loop may be collected mid-flight).
_ABANDONED: set[asyncio.Future[Any]] = set()


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    try:
        pool: asyncpg.Pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max(min_size, max_size),
            command_timeout=60,
            timeout=CONNECT_TIMEOUT_S,
        )
    except TRANSIENT_DB_ERRORS as err:
        raise UnavailableError(f"PostgreSQL is unreachable: {err}") from err
    return pool


async def bounded(timeout: float, work: Awaitable[T]) -> T:  # noqa: ASYNC109 - the point of it
    """Await `work`, or raise TimeoutError after `timeout` seconds however the work is stuck.

    Neither `asyncio.wait_for` nor asyncpg's own `timeout=` holds against a frozen (not dead)
    server: a timed-out query is cancelled by a request on a new connection, and the pool takes
    the connection back only once that cancellation has gone through, which waits for the server
    to wake up. Here the work is cancelled and left to finish in the background instead.
    """
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        abandon(task)
        raise
    if task in done:
        return task.result()
    abandon(task)
    raise TimeoutError(f"no answer within {timeout:g} s")


def abandon(task: asyncio.Future[Any]) -> None:
    """Cancel `task` without waiting for it, and keep it referenced until it has ended."""
    task.cancel()
    _ABANDONED.add(task)
    task.add_done_callback(_forget)


def _forget(task: asyncio.Future[Any]) -> None:
    _ABANDONED.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not report it: the caller has moved on
