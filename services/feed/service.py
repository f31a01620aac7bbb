"""The feed service running: INCIDENTS and ALARMS in, what the sharing policies allow on FEED out.

Two consumers share one outbox ("feed") and its relay:
- `feed-incidents` on `incident.>` and `feed-alarms` on `alarm.>`: each batch is one unit of
  work: the policies in force for its sites read (so a policy set a moment ago applies to the
  next batch: `none` stops the flow within a batch), each change projected (domain/projection.py),
  its FEED event emitted with its export record, or held back as a due row when the policy has a
  delay, and counted per zone and hour when the policy shares counts; one audit row per site
  names the policy version that let the batch's events leave; committed, then acked.
- the timer scheduler: every `timer_poll_ms` it releases delayed events that fell due (if the
  policy then in force still lets every field of them leave) and publishes the counts of the
  site-hours that closed (due.py), in units of work, so a timer pending at a crash fires after
  the restart, once.
With a context broker configured, each shared incident's NGSI-LD `Alert` is queued in the same
unit of work as its export (ngsi_export.py sends it).

The consumers and the timers run in one process of a deployment at a time (`up --workers N`, more
replicas): the holder of the feed's PostgreSQL advisory lock (leadership.py), so each incident's
events reach FEED in the order of its changes, across a handover too; and whatever order its
changes arrive in, none older than what FEED has of an incident leaves after it (order.py).
Every process serves the API and runs the relay (which elects its own leader).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter as Tally
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.alarms.channel import ALARM_CHANNEL
from services.common.audit import AuditEntry, record
from services.common.bus.consumer import ConsumerSpec, DurableConsumer, Rejection
from services.common.bus.publisher import JetStreamPublisher, OutgoingMessage
from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.common.logging import get_logger
from services.common.outbox import Outbox, OutboxRelay
from services.common.outbox.unit_of_work import UnitOfWork
from services.common.sites.registry import SiteRegistry
from services.feed import due, metrics, ngsi_export, order, repository
from services.feed.adapters.events import Outgoing, feed_event
from services.feed.adapters.read import AlarmRead, AlarmReader, places_of
from services.feed.channel import FeedEvent
from services.feed.config import FeedConfig
from services.feed.domain.facts import AlarmFacts, IncidentFacts
from services.feed.domain.ngsi import alert_entity
from services.feed.domain.policy import Kind, PolicyInForce
from services.feed.domain.projection import (
    counted,
    hour_closes,
    hour_of,
    project_alarm,
    project_incident,
    release_at,
)
from services.feed.leadership import Handover, Leadership
from services.feed.order import Versioned
from services.feed.repository import ExportRow, Pending
from services.feed.snapshot_copies import BlurredCopies
from services.incidents.channel import INCIDENT_CHANNEL

log = get_logger(__name__)
SERVICE = "feed"
INCIDENTS_DURABLE = "feed-incidents"
ALARMS_DURABLE = "feed-alarms"
RELAY_GRACE_S = 0.1
# A timer pass in hand at a stop is cancelled after this: its unit of work rolls back and its
# rows stay due for the next start, so a hung database holds the shutdown no longer.
TIMERS_GRACE_S = 0.5
TIMER_BATCH = 500
Clock = Callable[[], datetime]


@dataclass(slots=True)
class _Batch:
    """What one unit of work sends: messages to emit and their export rows, per site."""

    exports: list[tuple[Outgoing, ExportRow]] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)


class FeedService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        nats: tuple[NATS, JetStreamContext],
        config: FeedConfig,
        sites: Callable[[], SiteRegistry],
        *,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        nc, js = nats
        self._pool = pool
        self._config = config
        self._sites = sites
        self._clock = clock
        self.outbox = Outbox(pool, SERVICE)
        self._publisher = JetStreamPublisher(nc)
        self._relay = OutboxRelay(pool, self._publisher, SERVICE)
        self._alarms = AlarmReader(sites)
        self._copies = BlurredCopies(js)
        self._specs = {
            durable: ConsumerSpec(
                stream=channel.stream.name,
                durable=durable,
                filter_subject=channel.filter_subject,
                batch_max=config.batch_max,
                batch_max_bytes=config.batch_max_kb * 1024,
                batch_wait=config.batch_wait_ms / 1000,
                max_ack_pending=config.max_ack_pending,
                ack_wait=config.ack_wait_s,
            )
            for channel, durable in ((INCIDENT_CHANNEL, INCIDENTS_DURABLE), (ALARM_CHANNEL, ALARMS_DURABLE))
        }
        self._js = js
        self._handover = Handover(pool, nc, js, list(self._specs.values()), within=config.ack_wait_s)
        self._consumers: list[DurableConsumer[Versioned] | DurableConsumer[AlarmRead]] = []
        self._timers: asyncio.Task[None] | None = None
        # Set when this process stops or stands down: the timers stop with the consumers.
        self._timers_stopping = asyncio.Event()
        self._leadership = Leadership(
            pool,
            lead=self._start_consuming,
            stand_down=self._stop_consuming,
            stand_down_grace=2 * TIMERS_GRACE_S,
        )
        self.consuming = False

    @property
    def leading(self) -> bool:
        return self._leadership.leading

    @property
    def standing_by(self) -> bool:
        """Whether this process waits to take over (the lock is another's): ready, not a fault."""
        return self._leadership.standing_by

    async def start(self) -> None:
        await self._publisher.start()
        self._relay.start()
        await self._leadership.start()

    async def stop(self) -> None:
        await self._leadership.stop()
        await self._relay.stop(grace=RELAY_GRACE_S)
        await self._publisher.close()

    async def _start_consuming(self) -> None:
        # What the leader before held comes back first: it gave it back before these take any.
        await self._handover.take()
        # Fresh consumers each time: a stopped DurableConsumer does not start again.
        js = self._js
        self._consumers = [
            DurableConsumer[Versioned].in_units_of_work(
                js, self._specs[INCIDENTS_DURABLE], order.read_versioned, self._share_incidents, self.outbox
            ),
            DurableConsumer[AlarmRead].in_units_of_work(
                js, self._specs[ALARMS_DURABLE], self._alarms.read, self._share_alarms, self.outbox
            ),
        ]
        for consumer in self._consumers:
            await consumer.start()
        self.consuming = True
        self._timers_stopping.clear()
        self._timers = asyncio.create_task(self._run_timers(), name="feed-timers")

    async def _stop_consuming(self) -> None:
        self._timers_stopping.set()
        if self._timers is not None:
            _, pending = await asyncio.wait([self._timers], timeout=TIMERS_GRACE_S)
            for task in pending:
                task.cancel()
                await asyncio.wait([task], timeout=TIMERS_GRACE_S)
            self._timers = None
        for consumer in self._consumers:
            # What is not committed goes back at once, in stream order: the next leader gets it
            # before anything newer.
            await consumer.stop(release=True)
        self._consumers = []
        self.consuming = False
        await self._handover.give()

    # ------------------------------------------------------------------ consumers

    async def _share_incidents(self, items: list[Versioned], uow: UnitOfWork) -> Sequence[Rejection]:
        await self._leadership.check(uow.connection)
        kept = await order.admit(uow.connection, items)
        return await self._share(
            uow, [(i, items[i].facts, items[i].facts.tenant, items[i].facts.site) for i in kept]
        )

    async def _share_alarms(self, items: list[AlarmRead], uow: UnitOfWork) -> Sequence[Rejection]:
        # Flood edges and transitions without their alarm are not shared (the counts count raises).
        facts = [
            (i, read.facts, read.facts.tenant, read.facts.site) for i, read in enumerate(items) if read.facts
        ]
        await self._leadership.check(uow.connection)
        return await self._share(uow, facts)

    async def _share(
        self, uow: UnitOfWork, items: Sequence[tuple[int, IncidentFacts | AlarmFacts, str, str]]
    ) -> Sequence[Rejection]:
        started = time.perf_counter()
        if not items:
            return ()
        now = self._clock()
        policies = await repository.policies_in_force(uow.connection, {(t, s) for _, _, t, s in items})
        registry = self._sites()
        rejections = []
        batches: dict[tuple[str, str], _Batch] = defaultdict(_Batch)
        counts: Tally[tuple[str, str, datetime, str]] = Tally()
        alarm_counts: Tally[tuple[str, str, datetime, str]] = Tally()
        for index, facts, tenant, site in items:
            places = places_of(registry, site)
            if places is None:
                rejections.append(Rejection(index, f"site {site!r} is not in the site registry"))
                continue
            in_force = policies[(tenant, site)]
            policy = in_force.policy
            if isinstance(facts, IncidentFacts):
                kind, shared, object_id = (
                    Kind.INCIDENT,
                    project_incident(facts, policy, places),
                    facts.incident_id,
                )
                if counted(policy) and facts.change == "opened":
                    counts[(tenant, site, hour_of(facts.at), facts.zones[0] if facts.zones else "")] += 1
            else:
                kind, shared, object_id = Kind.ALARM, project_alarm(facts, policy, places), facts.event_id
                if counted(policy) and facts.raised:
                    alarm_counts[(tenant, site, hour_of(facts.at), facts.zone)] += 1
            if shared is None:
                metrics.WITHHELD.labels(str(kind), str(policy.level)).inc()
                continue
            out = feed_event(
                kind,
                shared,
                tenant=tenant,
                site=site,
                source_id=facts.event_id,
                at=facts.at,
                policy_version=in_force.version,
            )
            export = ExportRow(
                out.id,
                tenant,
                site,
                str(kind),
                object_id,
                in_force.version,
                str(policy.level),
                tuple(sorted(shared)),
                facts.at,
            )
            due = release_at(facts.at, policy)
            if policy.delay_s > 0 and due > now:
                batches[(tenant, site)].pending.append(Pending(export, due, out.message))
            else:
                batches[(tenant, site)].exports.append((out, export))
        grace = timedelta(seconds=self._config.counts_grace_s)
        keys = set(counts) | set(alarm_counts)
        # An hour counted while the consumers catch up (already ended) still waits the grace, so
        # the alarms and the incident of one happening land in it together.
        closes = {(t, s, h): max(hour_closes(h, grace), now + grace) for t, s, h, _ in keys}
        await repository.add_counts(uow.connection, {k: (counts[k], alarm_counts[k]) for k in keys}, closes)
        for (tenant, site), batch in sorted(batches.items()):
            for pending in batch.pending:
                await repository.add_pending(uow.connection, pending)
                metrics.DELAYED.labels(pending.export.kind).inc()
            await self._emit(uow, policies[(tenant, site)], [(o.message, e) for o, e in batch.exports])
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        return rejections

    async def _emit(
        self, uow: UnitOfWork, in_force: PolicyInForce, sent: Sequence[tuple[OutgoingMessage, ExportRow]]
    ) -> None:
        """Record the exports of one site and emit those not recorded before, with one audit row."""
        if not sent:
            return
        written = await repository.record_exports(uow.connection, [export for _, export in sent])
        fresh = [(message, export) for message, export in sent if export.event_id in written]
        if not fresh:
            return
        alerts = []
        for message, export in fresh:
            for copy in await self._copies.for_event(message):
                uow.emit(copy)  # the picture first: the event naming it finds it there
            uow.emit(message)
            metrics.EXPORTS.labels(export.kind, export.level).inc()
            if self._config.ngsi is not None and export.kind == Kind.INCIDENT:
                event = FeedEvent.FromString(message.payload)
                entity = alert_entity(event.data, tenant=export.tenant, site=export.site, issued=event.time)
                if entity is not None:
                    alerts.append((export.tenant, export.site, entity))
        await ngsi_export.enqueue(uow.connection, alerts)
        kinds = Tally(export.kind for _, export in fresh)
        versions = sorted({export.policy_version for _, export in fresh})
        await record(
            uow.connection,
            AuditEntry(
                actor=SERVICE,
                actor_kind="service",
                action="feed.exported",
                tenant=in_force.tenant,
                target=in_force.site,
                detail={
                    "policy_versions": versions,
                    "level": str(in_force.policy.level),
                    "events": dict(kinds),
                    "first_event": fresh[0][1].event_id,
                    "last_event": fresh[-1][1].event_id,
                },
            ),
        )
        log.info(
            "feed_exported",
            tenant=in_force.tenant,
            site=in_force.site,
            policy_version=versions[-1],
            events=len(fresh),
        )

    # ------------------------------------------------------------------ timers

    async def _run_timers(self) -> None:
        every = self._config.timer_poll_ms / 1000
        while not self._timers_stopping.is_set():
            try:
                while await self.fire_due(self._clock()) and not self._timers_stopping.is_set():
                    pass
            except TRANSIENT_DB_ERRORS as err:
                log.warning("feed_timers_unavailable", error=str(err))
            except UnavailableError as err:
                log.warning("feed_timers_unavailable", error=str(err))
            except Exception:  # never let the timers die: the rows stay due, the next pass tries again
                log.exception("feed_timers_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timers_stopping.wait(), every)

    async def fire_due(self, now: datetime) -> int:
        """Release the delayed events and close the site-hours due by `now`; returns how many
        rows were taken (0: nothing was due)."""
        async with self.outbox.unit_of_work() as uow:
            await self._leadership.check(uow.connection)
            pending = await repository.take_due_pending(uow.connection, now, TIMER_BATCH)
            hours = await repository.take_due_hours(uow.connection, now, TIMER_BATCH)
            keys = {(p.export.tenant, p.export.site) for p in pending} | {(h.tenant, h.site) for h in hours}
            policies = await repository.policies_in_force(uow.connection, keys)
            by_site: dict[tuple[str, str], list[tuple[OutgoingMessage, ExportRow]]] = defaultdict(list)
            for item in pending:
                key = (item.export.tenant, item.export.site)
                released = due.release(item, policies[key])
                if released is not None:
                    by_site[key].append((item.message, released))
            for hour in hours:
                key = (hour.tenant, hour.site)
                by_site[key].extend(due.counts(hour, policies[key]))
            for key, sent in sorted(by_site.items()):
                await self._emit(uow, policies[key], sent)
        return len(pending) + len(hours)
