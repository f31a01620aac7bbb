"""The NGSI-LD exporter: shared incidents waiting in `feed_ngsi_pending` (written with their
export, in its unit of work) upserted to the context broker as `Alert` entities.

Each pass takes the due rows (`FOR UPDATE SKIP LOCKED`), keeps the latest row of each entity (the
upsert replaces the entity: its latest state is all the broker needs), sends them in one batch,
and in the same transaction deletes what the broker took, moves what it refused (4xx) to
`feed_ngsi_dead` with its answer, and gives what failed for a while (5xx, timeouts, a broker
down) a later due time, 1 s doubling up to `retry_max_s`. A batch refused as a whole is tried
entity by entity, so one bad entity does not hold back the others. Nothing is lost: a row leaves
the table only once the broker took it or a person has its refusal to look at.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.logging import get_logger
from services.feed import metrics
from services.feed.adapters.ngsi_client import NgsiClient, UpsertOutcome
from services.feed.config import NgsiConfig

log = get_logger(__name__)
STOP_GRACE_S = 1.0

_DUE = """
SELECT seq, entity_id, tenant, site, entity, attempts FROM feed_ngsi_pending
WHERE due <= $1 ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED
"""
_DONE = "DELETE FROM feed_ngsi_pending WHERE seq = ANY($1::bigint[])"
_DEAD = """
INSERT INTO feed_ngsi_dead (seq, entity_id, tenant, site, entity, status, answer)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7) ON CONFLICT DO NOTHING
"""
_RETRY = """
UPDATE feed_ngsi_pending SET attempts = attempts + 1, due = $2, last_error = $3 WHERE seq = ANY($1::bigint[])
"""
_ENQUEUE = """
INSERT INTO feed_ngsi_pending (entity_id, tenant, site, entity)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[])
"""


def retry_delay(attempts: int, most_s: float) -> timedelta:
    """1 s after the first failure, doubling, at most `most_s`."""
    return timedelta(seconds=min(most_s, 2.0 ** min(attempts, 30)))


async def enqueue(conn: asyncpg.Connection, entities: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Queue (tenant, site, entity) for the broker, in the caller's transaction."""
    if not entities:
        return
    await conn.execute(
        _ENQUEUE,
        [str(e["id"]) for _, _, e in entities],
        [t for t, _, _ in entities],
        [s for _, s, _ in entities],
        [msgspec.json.encode(e).decode() for _, _, e in entities],
    )


class NgsiExporter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        config: NgsiConfig,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool = pool
        self._config = config
        self._clock = clock
        self._client = NgsiClient(config)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._client.start()
        self._task = asyncio.create_task(self._run(), name="feed-ngsi")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            # A pass in hand is cancelled after a short grace: its transaction rolls back and its
            # rows stay due (the broker may have them already: an upsert again replaces the same).
            _, pending = await asyncio.wait([self._task], timeout=STOP_GRACE_S)
            for task in pending:
                task.cancel()
                await asyncio.wait([task], timeout=STOP_GRACE_S)
        await self._client.close()

    async def _run(self) -> None:
        every = self._config.poll_ms / 1000
        while not self._stopping.is_set():
            try:
                while not self._stopping.is_set() and await self.export_due(self._clock()):
                    pass
            except TRANSIENT_DB_ERRORS as err:
                log.warning("feed_ngsi_unavailable", error=str(err))
            except Exception:  # never let the exporter die: the rows stay due
                log.exception("feed_ngsi_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), every)

    async def export_due(self, now: datetime) -> int:
        """Send what is due by `now`; returns the rows taken (0: nothing was due)."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_DUE, now, self._config.batch_max)
            if not rows:
                return 0
            by_entity: dict[str, list[asyncpg.Record]] = {}
            for row in rows:
                by_entity.setdefault(row["entity_id"], []).append(row)
            latest = {eid: group[-1] for eid, group in by_entity.items()}
            entities = [_entity(row) for row in latest.values()]
            outcome = await self._client.upsert(entities)
            if len(entities) > 1 and not outcome.done and not outcome.retry:
                outcome = await self._one_by_one(entities)
            await self._settle(conn, now, by_entity, latest, outcome)
        return len(rows)

    async def _one_by_one(self, entities: list[dict[str, Any]]) -> UpsertOutcome:
        merged = UpsertOutcome()
        for entity in entities:
            single = await self._client.upsert([entity])
            merged.done.update(single.done)
            merged.refused.update(single.refused)
            merged.retry.update(single.retry)
        return merged

    async def _settle(
        self,
        conn: asyncpg.Connection,
        now: datetime,
        by_entity: dict[str, list[asyncpg.Record]],
        latest: dict[str, asyncpg.Record],
        outcome: UpsertOutcome,
    ) -> None:
        done = [r["seq"] for eid in outcome.done for r in by_entity.get(eid, [])]
        for eid, (status, answer) in outcome.refused.items():
            row = latest[eid]
            await conn.execute(
                _DEAD, row["seq"], eid, row["tenant"], row["site"], _text(row["entity"]), status, answer
            )
            done += [r["seq"] for r in by_entity[eid]]
            log.error("feed_ngsi_refused", entity_id=eid, site=row["site"], status=status, answer=answer)
        if done:
            await conn.execute(_DONE, done)
        for eid, why in outcome.retry.items():
            attempts = latest[eid]["attempts"]
            due = now + retry_delay(attempts, self._config.retry_max_s)
            await conn.execute(_RETRY, [r["seq"] for r in by_entity[eid]], due, why[:500])
            log.warning("feed_ngsi_retry", entity_id=eid, attempts=attempts + 1, error=why[:200])
        metrics.NGSI.labels("upserted").inc(len(outcome.done))
        metrics.NGSI.labels("refused").inc(len(outcome.refused))
        metrics.NGSI.labels("retried").inc(len(outcome.retry))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


def _entity(row: asyncpg.Record) -> dict[str, Any]:
    value = row["entity"]
    decoded: dict[str, Any] = msgspec.json.decode(value) if isinstance(value, str) else value
    return decoded
