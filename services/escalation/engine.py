"""The delivery engine: claims due deliveries, attempts each in a task of its own, records what
came of it.

Each attempt is a task, bounded per endpoint (`endpoint_concurrency`), so a hanging endpoint
holds only its own slots and never delays another's deliveries. The claim query leaves out
endpoints whose circuit breaker is open, and disabled or deleted ones. A pass runs when a commit
queues deliveries (PostgreSQL NOTIFY), when an attempt ends, and at least every `poll_interval_s`
(a retry coming due). Stopping waits briefly for attempts in flight, then hands the rest back,
due at once, for the next start or another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from prometheus_client import Counter as Counter_

from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.common.logging import get_logger
from services.escalation import metrics
from services.escalation.adapters import deliveries_db
from services.escalation.adapters.deliveries_db import Claimed, Outcome
from services.escalation.adapters.sender import Sender
from services.escalation.config import EscalationConfig
from services.escalation.domain.retry import Verdict, next_attempt

log = get_logger(__name__)
# How long `stop` lets the loop finish its pass before cancelling it: a pass cut short rolls back
# and its rows stay due for the next start, and a frozen database must not hold the shutdown.
STOP_WAIT_S = 0.5
# The database away: the pass, or the recording of an outcome, is tried again later.
_UNAVAILABLE: tuple[type[BaseException], ...] = (*TRANSIENT_DB_ERRORS, UnavailableError)
# A claimed delivery not finished this long after its attempt's total timeout is another's to take.
LEASE_MARGIN_S = 10.0
STOP_GRACE_S = 1.0
CLAIM_GATHER_S = 0.005


# Each outcome's counter child, looked up once rather than on every attempt.
_ATTEMPTS_BY_OUTCOME: dict[str, Counter_] = {}


def _attempted(outcome: str) -> None:
    child = _ATTEMPTS_BY_OUTCOME.get(outcome)
    if child is None:
        child = _ATTEMPTS_BY_OUTCOME[outcome] = metrics.ATTEMPTS.labels(outcome)
    child.inc()


class DeliveryEngine:
    def __init__(
        self,
        pool: asyncpg.Pool,
        config: EscalationConfig,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._pool = pool
        self._config = config
        self._clock = clock
        self._draw = draw
        self._sender = Sender(
            connect_timeout_s=config.connect_timeout_s, total_timeout_s=config.total_timeout_s
        )
        self._token = uuid.uuid4().hex
        self._in_flight: Counter[str] = Counter()
        self._tasks: dict[asyncio.Task[None], Claimed] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        # Outcomes waiting to be recorded: one transaction records all that ended meanwhile.
        self._outcomes: list[tuple[Claimed, Outcome]] = []
        self._outcome_ready = asyncio.Event()
        self._recorder: asyncio.Task[None] | None = None
        self._recording = True
        # Bound once logging is configured (at start): a line per delivery must cost nothing
        # when its level is off, which the module's lazy logger, rebuilt on every call, does not.
        self._log: Any = log
        self.running = False

    async def start(self) -> None:
        self._log = log.bind()
        await self._sender.start()
        self._runner = asyncio.create_task(self._run(), name="escalation-deliveries")
        self._recorder = asyncio.create_task(self._record(), name="escalation-outcomes")
        self.running = True

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._runner is not None:
            await asyncio.wait([self._runner], timeout=STOP_WAIT_S)
            self._runner.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=STOP_GRACE_S)
        unfinished = [d.id for t, d in self._tasks.items() if not t.done()]
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        self._recording = False
        self._outcome_ready.set()
        if self._recorder is not None:
            await asyncio.wait([self._recorder], timeout=2.0)
            self._recorder.cancel()
        with contextlib.suppress(*_UNAVAILABLE):
            await deliveries_db.release(self._pool, unfinished, self._token, self._clock())
        await self._sender.close()
        self.running = False

    # ------------------------------------------------------------------ the loop

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def _run(self) -> None:
        listener: asyncpg.Connection | None = None
        failures = 0
        while not self._stopping.is_set():
            try:
                if listener is None or listener.is_closed():
                    listener = await self._listen()
                claimed = await self._claim()
                failures = 0
            except _UNAVAILABLE as err:
                failures += 1
                log.warning("escalation_claim_unavailable", error=str(err))
                if listener is not None:
                    await self._unlisten(listener)
                listener = None
                await self._pause(min(5.0, 0.2 * 2**failures))
                continue
            except Exception:  # never let the loop die: the next pass tries again
                log.exception("escalation_claim_failed")
                await self._pause(1.0)
                continue
            for delivery in claimed:
                self._in_flight[delivery.endpoint_id] += 1
                task = asyncio.create_task(self._attempt(delivery), name=f"delivery-{delivery.id}")
                self._tasks[task] = delivery
                task.add_done_callback(self._done)
            if len(claimed) < self._config.claim_batch:
                await self._pause(self._config.poll_interval_s)
                # Woken (a commit queued deliveries, an attempt ended): let what else comes in the
                # next moment join this pass rather than make one pass each.
                await asyncio.sleep(CLAIM_GATHER_S)
        if listener is not None:
            await self._unlisten(listener)

    async def _listen(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await self._pool.acquire()
        try:
            await conn.add_listener(deliveries_db.NOTIFY_CHANNEL, self._on_notify)
        except BaseException:
            await self._pool.release(conn)
            raise
        return conn

    async def _unlisten(self, conn: asyncpg.Connection) -> None:
        # Back to the pool without its listener (the pool refuses one that still listens), or
        # dropped when it cannot say goodbye: never kept out of the pool.
        try:
            await conn.remove_listener(deliveries_db.NOTIFY_CHANNEL, self._on_notify)
            await self._pool.release(conn)
        except Exception as err:
            log.warning("escalation_listener_dropped", error=str(err))
            conn.terminate()
            with contextlib.suppress(Exception):
                await self._pool.release(conn)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    def _done(self, task: asyncio.Task[None]) -> None:
        delivery = self._tasks.pop(task, None)
        if delivery is not None:
            self._in_flight[delivery.endpoint_id] -= 1
            if self._in_flight[delivery.endpoint_id] <= 0:
                del self._in_flight[delivery.endpoint_id]
        self._wake.set()  # a slot is free

    async def _claim(self) -> list[Claimed]:
        now = self._clock()
        lease = now + timedelta(seconds=self._config.total_timeout_s + LEASE_MARGIN_S)
        busy = {e: n for e, n in self._in_flight.items() if n > 0}
        return await deliveries_db.claim(
            self._pool,
            now=now,
            token=self._token,
            lease_until=lease,
            per_endpoint=self._config.endpoint_concurrency,
            in_flight=busy,
            limit=self._config.claim_batch,
        )

    # ------------------------------------------------------------------ one attempt

    async def _attempt(self, delivery: Claimed) -> None:
        try:
            await self._attempt_once(delivery)
        except Exception:  # a bug must not take the engine down: the lease brings it back
            log.exception("delivery_attempt_failed", delivery=delivery.id, endpoint=delivery.endpoint_id)

    async def _attempt_once(self, delivery: Claimed) -> None:
        started = time.perf_counter()
        answer = await self._sender.send(delivery, self._clock())
        metrics.ATTEMPT_SECONDS.observe(time.perf_counter() - started)
        now = self._clock()
        attempts = delivery.attempts + 1
        step = next_attempt(
            answer, attempts=attempts, now=now, schedule=self._config.retry_schedule_s, draw=self._draw
        )
        if step.verdict is Verdict.DELIVERED:
            outcome = Outcome(
                status="delivered",
                due=None,
                delivered_at=now,
                http_status=answer.status,
                error="",
                answered=True,
            )
        elif step.verdict is Verdict.GONE:
            outcome = Outcome(
                status="dead",
                due=None,
                delivered_at=None,
                http_status=answer.status,
                error=step.error,
                answered=False,
                disable_reason=f"410 Gone at {now.isoformat()}",
            )
        else:
            outcome = Outcome(
                status="pending" if step.due is not None else "dead",
                due=step.due,
                delivered_at=None,
                http_status=answer.status,
                error=step.error,
                answered=False,
            )
        _attempted(str(step.verdict) if outcome.status != "dead" else "dead")
        self._outcomes.append((delivery, outcome))
        self._outcome_ready.set()

    async def _record(self) -> None:
        while self._recording or self._outcomes:
            await self._outcome_ready.wait()
            self._outcome_ready.clear()
            done, self._outcomes = self._outcomes, []
            if not done:
                continue
            until = self._clock() + timedelta(seconds=self._config.breaker_cooldown_s)
            try:
                recorded = await deliveries_db.finish_many(
                    self._pool,
                    done,
                    self._token,
                    breaker_after=self._config.breaker_failures,
                    breaker_until=until,
                )
            except _UNAVAILABLE as err:
                # The rows stay claimed until their lease ends, then are attempted again with the
                # same webhook-ids: the receivers drop the copies.
                log.warning("delivery_outcomes_unrecorded", error=str(err), count=len(done))
                continue
            except Exception:  # never let the recorder die
                log.exception("delivery_outcomes_failed", count=len(done))
                continue
            delivered = 0
            for delivery, outcome in done:
                if outcome.status == "delivered" and delivery.id in recorded:
                    delivered += 1
                    self._log.debug(
                        "delivery_delivered",
                        delivery=delivery.id,
                        endpoint=delivery.endpoint_id,
                        incident_id=delivery.incident_id,
                        site=delivery.site,
                        attempts=delivery.attempts + 1,
                        http_status=outcome.http_status,
                    )
                else:
                    self._log_outcome(delivery, outcome, delivery.id in recorded)
            metrics.DELIVERED.inc(delivered)

    def _log_outcome(self, delivery: Claimed, outcome: Outcome, recorded: bool) -> None:
        log_ = self._log.bind(
            delivery=delivery.id,
            endpoint=delivery.endpoint_id,
            incident_id=delivery.incident_id,
            site=delivery.site,
        )
        attempts = delivery.attempts + 1
        if not recorded:
            log_.warning("delivery_claim_lost", outcome=outcome.status)
        elif outcome.status == "dead":
            metrics.DEAD.inc()
            log_.warning("delivery_dead", attempts=attempts, error=outcome.error)
        else:
            log_.info("delivery_retry", attempts=attempts, error=outcome.error, due=str(outcome.due))
