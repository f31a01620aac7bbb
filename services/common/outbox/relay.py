"""The outbox relay: publishes what a service committed, in commit order, each message once.

One relay per service and process; across processes (`up --workers N`, replicas) one leads: it
holds a PostgreSQL advisory lock per service on a connection of its own, and the others stand by,
trying the lock every `standby_interval`, so one of them takes over when the leader stops or its
connection is lost (the server releases the lock with the session).

The leader LISTENs on the service's channel, which every commit of a unit of work notifies (a
commit in the leader's own process also wakes it directly, a round trip sooner), and also polls
every `poll_interval` for what a notification did not announce (sent while it was reconnecting).
It reads the oldest rows in `seq` order, a chunk at a time, publishes each chunk through the
pipelined publisher (in order, on one connection), and deletes the rows once JetStream
acknowledged them and every row before them. Chunks are pipelined too: what was committed while a
chunk waits for its acknowledgement is read and sent at once, up to `window` chunks in flight. A
failure stops the pass; the next one starts again from the first row not deleted. Rows published
but not deleted (a failure or a crash in between) are published again with the same Nats-Msg-Id,
and JetStream drops the repeats within its duplicate window.

Published rows are deleted rather than marked: the table then holds exactly what is still to send,
so a pass reads from the front of a small index, and rows committed out of `seq` order (two
concurrent transactions) are never skipped, which a "published up to seq N" mark would risk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import deque
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from services.common.bus.publisher import JetStreamPublisher, OutgoingMessage, PublishRejected
from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.common.logging import get_logger
from services.common.outbox import metrics
from services.common.outbox.unit_of_work import notify_channel, wake_on_commit

log = get_logger(__name__)

# One round trip per chunk: delete what JetStream acknowledged ($3) and read what follows, leaving
# out the rows in flight ($4). The SELECT sees the snapshot from before the DELETE, hence $3 twice.
_DELETE_AND_READ = """
WITH published AS (DELETE FROM outbox WHERE seq = ANY($3::bigint[]))
SELECT seq, subject, payload, headers::text AS headers,
       extract(epoch FROM clock_timestamp() - created_at)::float8 AS age
FROM outbox
WHERE service = $1 AND seq <> ALL($3::bigint[]) AND seq <> ALL($4::bigint[])
ORDER BY seq LIMIT $2
"""
_DELETE = "DELETE FROM outbox WHERE seq = ANY($1::bigint[])"
_DEPTH = "SELECT count(*) FROM outbox WHERE service = $1"
_PURGE = (
    "DELETE FROM processed_messages WHERE service = $1 AND processed_at < now() - make_interval(secs => $2)"
)
# The first key of the two-integer advisory locks held by outbox relays; the second names the
# service. (Migrations use the one-bigint form, a separate key space.)
_LOCK_CLASS = 0x5AFE_0B
_HEADERS = msgspec.json.Decoder(dict[str, str])


@dataclass(frozen=True, slots=True)
class RelayConfig:
    chunk: int = 1_000
    # Chunks published and not yet acknowledged, at most.
    window: int = 4
    # Fallback for a notification missed while reconnecting; normally the NOTIFY wakes the relay.
    poll_interval: float = 1.0
    standby_interval: float = 1.0
    # Processed-message records (the consumers' inbox) are kept longer than any message can wait
    # for redelivery (the streams keep messages 72 hours by default).
    processed_keep_s: float = 7 * 24 * 3600.0
    purge_interval: float = 3600.0


def lock_key(service: str) -> tuple[int, int]:
    digest = hashlib.blake2b(service.encode(), digest_size=4).digest()
    return _LOCK_CLASS, int.from_bytes(digest, "big", signed=True)


def backoff(failures: int) -> float:
    """Delay before retrying: 0.1 s doubling to 5 s. Short: alarms wait on it once NATS is back."""
    return float(min(5.0, 0.1 * 2 ** min(max(0, failures - 1), 16)))


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        publisher: JetStreamPublisher,
        service: str,
        config: RelayConfig | None = None,
    ) -> None:
        self._pool = pool
        self._publisher = publisher
        self._service = service
        self._config = config or RelayConfig()
        self._channel = notify_channel(service)
        self._lock = lock_key(service)
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.leading = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self._service}")

    async def stop(self, grace: float = 10.0) -> None:
        """Finish the pass in hand (its rows are published and deleted), release the lead, return."""
        self._stopped.set()
        self._wake.set()
        if self._task is not None:
            _, pending = await asyncio.wait([self._task], timeout=grace)
            for task in pending:
                task.cancel()
                await asyncio.wait([task], timeout=grace)
        metrics.DEPTH.labels(self._service).set(0)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)

    async def _run(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            try:
                async with self._pool.acquire() as conn:
                    if await self._take_lead(conn):
                        failures = 0
                        await self._lead(conn)
            except Exception as err:  # the database went away, or a bug: retry, never die
                failures += 1
                delay = backoff(failures)
                if isinstance(err, (*TRANSIENT_DB_ERRORS, asyncpg.PostgresError, UnavailableError)):
                    metrics.FAILURES.labels(self._service, "database").inc()
                    log.warning(
                        "outbox_relay_failed", service=self._service, error=repr(err), retry_in_s=delay
                    )
                else:
                    metrics.FAILURES.labels(self._service, "error").inc()
                    log.exception("outbox_relay_error", service=self._service, retry_in_s=delay)
                await self._pause(delay)
            finally:
                if self.leading:
                    log.info("outbox_relay_released", service=self._service)
                self.leading = False

    async def _take_lead(self, conn: asyncpg.Connection) -> bool:
        waiting = False
        while not self._stopped.is_set():
            if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *self._lock):
                self.leading = True
                log.info("outbox_relay_leading", service=self._service)
                return True
            if not waiting:
                waiting = True
                metrics.DEPTH.labels(self._service).set(0)
                log.info("outbox_relay_standby", service=self._service)
            await self._pause(self._config.standby_interval)
        return False

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def _lead(self, conn: asyncpg.Connection) -> None:
        # The relay's own writes are deletes of published rows: one lost in a crash is published
        # again and dropped by JetStream, so they need not wait for the WAL flush. This keeps a
        # loaded disk out of the publishing loop. (Units of work commit durably, as ever.)
        await conn.execute("SET synchronous_commit TO off")
        await conn.add_listener(self._channel, self._on_notify)
        conn.add_termination_listener(self._on_notify)
        unwake = wake_on_commit(self._service, self._on_notify)
        loop = asyncio.get_running_loop()
        next_gauge = next_purge = loop.time()
        failures = 0
        try:
            while not self._stopped.is_set():
                try:
                    await self._drain(conn)
                    failures = 0
                except (UnavailableError, PublishRejected) as err:
                    # The bus, not the database: keep the lead and retry from the first unsent row.
                    failures += 1
                    reason = "refused" if isinstance(err, PublishRejected) else "bus"
                    metrics.FAILURES.labels(self._service, reason).inc()
                    log.warning(
                        "outbox_publish_failed",
                        service=self._service,
                        error=str(err),
                        retry_in_s=backoff(failures),
                    )
                    await self._pause(backoff(failures))
                    continue
                if conn.is_closed():
                    raise UnavailableError("the relay's database connection was closed")
                now = loop.time()
                if now >= next_gauge:
                    metrics.DEPTH.labels(self._service).set(await conn.fetchval(_DEPTH, self._service))
                    next_gauge = now + self._config.poll_interval
                if now >= next_purge:
                    await conn.execute(_PURGE, self._service, self._config.processed_keep_s)
                    next_purge = now + self._config.purge_interval
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._config.poll_interval)
        finally:
            unwake()
            with contextlib.suppress(Exception):
                conn.remove_termination_listener(self._on_notify)
                await conn.remove_listener(self._channel, self._on_notify)
                # Released now rather than when the pool resets the connection: a standby takes over.
                await conn.execute("SELECT pg_advisory_unlock($1, $2)", *self._lock)

    async def _drain(self, conn: asyncpg.Connection) -> None:
        """Publish and delete every row there is, oldest first; return when none is left.

        Order holds across pipelined chunks because chunks start in the order they were read and
        the publisher sends a chunk's messages without yielding to the loop in between (its
        reservation lock is FIFO and the connection buffers nothing, see connection.py), so the
        server receives them in `seq` order. Only an acknowledged prefix of chunks is deleted.
        """
        service, chunk, window = self._service, self._config.chunk, self._config.window
        sent: deque[tuple[list[int], asyncio.Task[None]]] = deque()
        acked: list[int] = []
        try:
            while True:
                while sent and sent[0][1].done():
                    seqs, task = sent.popleft()
                    task.result()  # a failed publish ends the pass here
                    acked.extend(seqs)
                reading = len(sent) < window and not self._stopped.is_set()
                if reading:
                    # Cleared before reading: a commit notified after the read is read next round.
                    self._wake.clear()
                    in_flight = [seq for seqs, _ in sent for seq in seqs]
                    rows = await conn.fetch(_DELETE_AND_READ, service, chunk, acked, in_flight)
                    acked = []
                    if rows:
                        task = asyncio.create_task(self._publish(rows))
                        sent.append(([r["seq"] for r in rows], task))
                        if len(rows) == chunk:
                            continue  # a backlog: read on while this chunk is in flight
                if not sent:
                    if acked:  # stopping: what was acknowledged last is deleted all the same
                        await conn.execute(_DELETE, acked)
                    return
                if not reading:  # the window is full, or the relay stops: the oldest ack first
                    await asyncio.wait([sent[0][1]])
                    continue
                # Until the oldest chunk is acknowledged, or a commit brings something to send.
                woken = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait([sent[0][1], woken], return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
        finally:
            # After a failure, let the chunks in flight finish: their rows stay and are sent again.
            if sent:
                await asyncio.wait([task for _, task in sent])
                for _, task in sent:
                    if not task.cancelled():
                        task.exception()  # retrieved: the first failure is the one raised

    async def _publish(self, rows: list[asyncpg.Record]) -> None:
        loop = asyncio.get_running_loop()
        read_at = loop.time()
        await self._publisher.publish(
            [OutgoingMessage(r["subject"], r["payload"], _HEADERS.decode(r["headers"])) for r in rows]
        )
        # Ages are measured on the database's clock up to the read and on ours after it, so a
        # clock difference between the two machines does not enter.
        acked = loop.time() - read_at
        latency = metrics.LATENCY.labels(self._service)
        for r in rows:
            latency.observe(r["age"] + acked)
        metrics.PUBLISHED.labels(self._service).inc(len(rows))
