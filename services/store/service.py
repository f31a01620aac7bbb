"""The store service: consume OBSERVATIONS, write them to PostgreSQL, keep partitions ready."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime

import asyncpg
from nats.js import JetStreamContext

from services.common.bus.consumer import ConsumerSpec, DurableConsumer, Rejection
from services.common.logging import get_logger
from services.ingest.channel import OBSERVATION_CHANNEL
from services.store import metrics
from services.store.config import StoreConfig
from services.store.partitions import drop_expired, ensure_partitions
from services.store.rows import Row, observation_rows
from services.store.writer import ObservationWriter

log = get_logger(__name__)
DURABLE = "store"


class StoreService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        config: StoreConfig,
        *,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self._pool = pool
        self._retention_days = config.retention_days
        self._writer = ObservationWriter(pool)
        self._today = today
        spec = ConsumerSpec(
            stream=OBSERVATION_CHANNEL.stream.name,
            durable=DURABLE,
            filter_subject=OBSERVATION_CHANNEL.filter_subject,
            batch_max=config.batch_max,
            batch_max_bytes=config.batch_max_kb * 1024,
            batch_wait=config.batch_wait_ms / 1000,
            max_ack_pending=config.max_ack_pending,
            ack_wait=config.ack_wait_s,
        )
        self._consumer = DurableConsumer[list[Row]](js, spec, observation_rows, self._write)
        self._maintenance: asyncio.Task[None] | None = None

    async def _write(self, batches: list[list[Row]]) -> Sequence[Rejection]:
        rows = [row for batch in batches for row in batch]
        started = time.perf_counter()
        new = await self._writer.write(rows)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.observe(len(rows))
        metrics.STORED.inc(new)
        if new < len(rows):
            metrics.DUPLICATES.inc(len(rows) - new)
        return ()

    async def start(self) -> None:
        await ensure_partitions(self._pool, self._today())
        await drop_expired(self._pool, self._today(), self._retention_days)
        await self._consumer.start()
        self._maintenance = asyncio.create_task(self._keep_partitions(), name="store-partitions")

    async def stop(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        await self._consumer.stop()

    async def _keep_partitions(self) -> None:
        while True:
            await asyncio.sleep(3600)
            try:
                await ensure_partitions(self._pool, self._today())
                await drop_expired(self._pool, self._today(), self._retention_days)
            except Exception:
                log.exception("partition_maintenance_failed")
