"""Write observation rows in batches: COPY into a session-temporary stage, then one INSERT.

COPY cannot skip rows that already exist, and redelivery must not fail a batch, so rows are copied
into a temporary table and moved with an INSERT. One transaction per batch: the consumer acks the
batch only after it commits.

The key is (tenant, id, time) (migration 0002; its columns ordered time first since 0003, so
inserts land at the index's right edge): a row whose key is already stored, or appears earlier in
the same batch, is a retry and is skipped, so the first copy wins. The stage is read in the order
COPY wrote it (a temporary table's heap, emptied at each commit, is never scanned from the
middle), which is the order the messages came off the stream.

Nearly every batch is new rows only (a duplicate is a client's retry or a redelivery), so the move
is first tried as a plain INSERT, whose unique check is part of inserting each row into the key.
`ON CONFLICT DO NOTHING` would first probe the key for every row, then insert speculatively and
confirm (one more WAL record a row): a fifth more work for PostgreSQL per batch. A batch that does
hold a duplicate fails that INSERT inside a savepoint, keeping the stage, and is moved again with
`ON CONFLICT DO NOTHING`; the batches after it go that way directly until one turns out to be all
new, so a redelivered backlog costs one failed attempt, not one per batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.store.rows import COLUMNS, Row

_STAGE = "observations_stage"
_CREATE_STAGE = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (LIKE observations INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_MOVE_ALL = f"INSERT INTO observations SELECT * FROM {_STAGE}"
_MOVE_NEW = f"{_MOVE_ALL} ON CONFLICT DO NOTHING"


class ObservationWriter:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        # Backends (by server pid) whose session already has the stage table.
        self._staged: set[int] = set()
        # The last batch held rows already stored: expect the next one to hold some too.
        self._expect_duplicates = False

    async def write(self, rows: Sequence[Row]) -> int:
        """Store rows; return how many were new (the rest were duplicates)."""
        try:
            async with self._pool.acquire() as conn:
                pid = conn.get_server_pid()
                if pid not in self._staged:
                    await conn.execute(_CREATE_STAGE)
                    self._staged.add(pid)
                async with conn.transaction():
                    await conn.copy_records_to_table(_STAGE, records=rows, columns=COLUMNS)
                    new = await self._move(conn)
        except asyncpg.exceptions.UndefinedTableError as err:
            self._staged.clear()  # a new backend reused a pid we knew: create the stage again
            raise UnavailableError(f"stage table missing, retrying: {err}") from err
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError(f"PostgreSQL unavailable: {err}") from err
        self._expect_duplicates = new < len(rows)
        return new

    async def _move(self, conn: asyncpg.Connection) -> int:
        if not self._expect_duplicates:
            try:
                async with conn.transaction():  # a savepoint: a duplicate undoes the INSERT only
                    return _count(await conn.execute(_MOVE_ALL))
            except asyncpg.exceptions.UniqueViolationError:
                pass
        return _count(await conn.execute(_MOVE_NEW))


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])
