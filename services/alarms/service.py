"""The alarm engine as a running service: OBSERVATIONS in, alarm transitions and floods out.

Three loops share one outbox ("alarms") and its relay:
- the consumer: each batch of observation messages is one unit of work per site it touches: lock
  the site, read its points (repository.py), evaluate (domain/engine.py), write points,
  transitions and floods, emit their messages, commit; once every site committed, ack. Sites
  another worker holds are taken last, so workers sharing the deliver group work on different
  sites side by side instead of one waiting for the other's whole batch;
- the timer scheduler: every `timer_poll_ms` it asks which sites have a point or a flood due and
  fires their timers in a unit of work per site, dated at their due times, so a timer pending at a
  crash fires after the restart, once (the row's `due` moves on in the same commit);
- operator requests (api.py), one unit of work each.

Nothing is cached between units of work: every one reads the rows it changes under their locks,
so any number of workers and the API stay correct together (see the README for scaling out). Only
the decoding of what a row holds is saved (workset.decode_record: the same bytes, the same record).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.alarms import metrics, repository
from services.alarms.adapters.messages import flood_message, transition_message
from services.alarms.adapters.observations import observations_of
from services.alarms.config import AlarmsConfig
from services.alarms.domain.engine import Engine
from services.alarms.domain.workset import Emitted, Observation, SiteKey, Workset
from services.alarms.rules_reload import Rules
from services.common.bus.consumer import ConsumerSpec, DurableConsumer, Rejection
from services.common.bus.publisher import JetStreamPublisher
from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.common.logging import get_logger
from services.common.outbox import Outbox, OutboxRelay
from services.common.outbox.unit_of_work import UnitOfWork
from services.ingest.channel import OBSERVATION_CHANNEL

log = get_logger(__name__)
DURABLE = "alarms"
SERVICE = "alarms"
GAUGES_EVERY_S = 5.0
RELAY_GRACE_S = 1.0

_ACTIVE_BY_PRIORITY = """
SELECT priority, count(*) AS n FROM alarm_points
WHERE state IN ('UNACK', 'ACKED', 'RTNUN') GROUP BY priority
"""
_IN_FLOOD = "SELECT count(DISTINCT (tenant, site)) FROM alarm_floods WHERE ended_at IS NULL"


class AlarmsService:
    def __init__(
        self, pool: asyncpg.Pool, nc: NATS, js: JetStreamContext, config: AlarmsConfig, rules: Rules
    ) -> None:
        self._pool = pool
        self._rules = rules
        self._poll = config.timer_poll_ms / 1000
        self.outbox = Outbox(pool, SERVICE)
        self._publisher = JetStreamPublisher(nc)
        self._relay = OutboxRelay(pool, self._publisher, SERVICE)
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
        # No inbox of processed message ids: evaluation is idempotent per observation (a point
        # ignores an observation it applied or one older than it), and a transition's id is
        # derived from its cause, kept once by alarm_transitions; so a redelivered batch changes
        # nothing, and each batch saves a write per message.
        # Units of work per site (not one per batch): see _evaluate.
        self._consumer = DurableConsumer[list[Observation]](js, spec, observations_of, self._evaluate)
        self._stopping = asyncio.Event()
        self._timers: asyncio.Task[None] | None = None
        self.consuming = False

    async def start(self) -> None:
        await self._publisher.start()
        self._relay.start()
        await self._consumer.start()
        self.consuming = True
        self._timers = asyncio.create_task(self._run_timers(), name="alarm-timers")

    async def stop(self) -> None:
        self._stopping.set()
        if self._timers is not None:
            # Cancelled, not awaited to the end: a timer pass cut short rolls back and its timers
            # stay due in their rows, so the next start fires them (and a hung database cannot
            # hold the shutdown here).
            self._timers.cancel()
            await asyncio.wait([self._timers], timeout=1.0)
        # The batch in hand is committed and acked; then what it committed is published. Rows
        # the relay has no time for are published at the next start (JetStream drops repeats).
        await self._consumer.stop()
        self.consuming = False
        await self._relay.stop(grace=RELAY_GRACE_S)
        await self._publisher.close()

    # ------------------------------------------------------------------ observations

    async def _evaluate(self, batches: list[list[Observation]]) -> Sequence[Rejection]:
        """Evaluate a batch in one unit of work per site, each committed before the batch is acked.

        Voting groups and flood detectors never span sites, so a site's observations are evaluated
        as they would be in one unit of work for the batch. Sites another unit of work holds are
        left to the end and then waited for: two workers given the same sites' messages interleave
        site by site. A batch cut short (a crash between two sites' commits) is redelivered whole;
        the sites already committed recognise their observations as applied."""
        started = time.perf_counter()
        by_site: dict[SiteKey, list[Observation]] = {}
        for batch in batches:
            for obs in batch:
                by_site.setdefault((obs.tenant, obs.site), []).append(obs)
        held = [site for site in sorted(by_site) if not await self._evaluate_site(site, by_site[site])]
        for site in held:
            await self._evaluate_site(site, by_site[site], wait=True)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        return ()

    async def _evaluate_site(
        self, site: SiteKey, observations: list[Observation], *, wait: bool = False
    ) -> bool:
        """Evaluate one site's observations in a unit of work; False when the site is held by
        another and `wait` is not set (nothing done)."""
        engine = self._rules.engine()
        work = Workset()
        async with self.outbox.unit_of_work() as uow:
            if wait:
                await repository.lock_sites(uow.connection, (site,), work)
            elif not await repository.try_lock_site(uow.connection, site, work):
                return False
            _, points = engine.keys_for(observations)
            await repository.lock_points(uow.connection, points, work)
            engine.observe(work, observations)
            await self.commit(uow, engine, work)
        metrics.EVALUATED.inc(work.evaluated)
        metrics.UNWATCHED.inc(work.unwatched)
        return True

    async def commit(self, uow: UnitOfWork, engine: Engine, work: Workset) -> list[Emitted]:
        """Write what `work` changed and emit its new transitions and flood edges."""
        new = await repository.write(uow.connection, engine, work)
        for emitted in new:
            transition = emitted.transition
            ids = transition.observation_ids
            uow.emit(transition_message(transition, emitted.alarm, correlation_id=ids[0] if ids else ""))
            metrics.TRANSITIONS.labels(transition.new.value).inc()
            log.info(
                "alarm_transition",
                site=transition.point.site,
                alarm_id=transition.point.alarm_id,
                old=transition.old.value,
                new=transition.new.value,
                at=transition.at.isoformat(),
                cause=transition.timer or (transition.action.action if transition.action else "observation"),
                correlation_id=ids[0] if ids else None,
            )
        for edge in work.edges:
            uow.emit(flood_message(edge))
            metrics.FLOODS.labels("began" if edge.began else "ended").inc()
            log.warning(
                "alarm_flood_began" if edge.began else "alarm_flood_ended",
                site=edge.site,
                at=edge.at.isoformat(),
                count=edge.count,
                activations=edge.activations,
            )
        metrics.TIMERS_FIRED.inc(work.timers_fired)
        return new

    # ------------------------------------------------------------------ timers

    async def _run_timers(self) -> None:
        gauges_at = 0.0
        while not self._stopping.is_set():
            try:
                await self.fire_due(datetime.now(UTC))
                if time.monotonic() >= gauges_at:
                    gauges_at = time.monotonic() + GAUGES_EVERY_S
                    await self._update_gauges()
            except TRANSIENT_DB_ERRORS as err:
                log.warning("alarm_timers_unavailable", error=str(err))
            except UnavailableError as err:
                log.warning("alarm_timers_unavailable", error=str(err))
            except Exception:  # never let the scheduler die: the next pass tries again
                log.exception("alarm_timers_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._poll)

    async def fire_due(self, now: datetime) -> int:
        """Fire every timer due by `now`, one unit of work per site; returns the timers fired."""
        async with self._pool.acquire() as conn:
            sites = await repository.due_sites(conn, now)
        fired = 0
        for site in sites:
            fired += await self._fire_site(site, now)
        return fired

    async def _fire_site(self, site: SiteKey, now: datetime) -> int:
        engine = self._rules.engine()
        work = Workset()
        async with self.outbox.unit_of_work() as uow:
            # Skipped when a batch of the site holds it: the next pass sees what it left due.
            if await repository.try_lock_site(uow.connection, site, work):
                points = await repository.due_points(uow.connection, site, now, engine)
                await repository.lock_points(uow.connection, points, work)
                engine.tick(work, now)
                await self.commit(uow, engine, work)
        return work.timers_fired

    async def _update_gauges(self) -> None:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_ACTIVE_BY_PRIORITY)
            in_flood = await conn.fetchval(_IN_FLOOD)
        counts = {row["priority"]: row["n"] for row in rows}
        for priority in ("low", "medium", "high", "emergency"):
            metrics.ACTIVE.labels(priority).set(counts.get(priority, 0))
        metrics.SITES_IN_FLOOD.set(in_flood or 0)
