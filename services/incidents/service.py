"""The incidents service running: ALARMS in, incidents in PostgreSQL and on INCIDENTS out.

Two consumers share one outbox ("incidents") and its relay:
- `incidents` on `alarm.>`: each batch of alarm transitions is one unit of work: the consumer's
  inbox skips what was processed before, the touched sites are locked with their live incidents
  (repository.py), activations and returns fused (domain/fusion.py), incidents and timeline
  entries written, the changes emitted, committed, then acked;
- `incidents-floods` on `alarmflood.>`: flood edges, the same way.
People's requests (actions_api.py) are units of work too, through `act`.

Nothing is cached between units of work: each reads what it changes under its site's lock, so
any number of workers and the API stay correct together.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Sequence

import asyncpg
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.alarms.channel import ALARM_CHANNEL, FLOOD_CHANNEL
from services.common.bus.consumer import ConsumerSpec, DurableConsumer, Rejection
from services.common.bus.publisher import JetStreamPublisher
from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.common.logging import get_logger
from services.common.outbox import Outbox, OutboxRelay
from services.common.outbox.unit_of_work import UnitOfWork
from services.incidents import metrics, repository
from services.incidents.adapters.messages import change_message
from services.incidents.adapters.signals import (
    AlarmMessage,
    SignalReader,
    read_alarm_message,
    read_flood_message,
)
from services.incidents.config import IncidentsConfig
from services.incidents.domain.fusion import Change, FloodSignal, Fusion
from services.incidents.domain.incident import Incident
from services.incidents.domain.model import Signal
from services.incidents.domain.timeline import Entry

log = get_logger(__name__)
SERVICE = "incidents"
DURABLE = "incidents"
FLOOD_DURABLE = "incidents-floods"
GAUGES_EVERY_S = 5.0
# What the relay has committed but not yet published at a stop is published at the next start (or
# by another worker's relay), never lost: so a short grace, and a hung database holds the shutdown
# for at most twice this (the relay's wait, then its cancellation) on top of the alarm engine's.
RELAY_GRACE_S = 0.1


class IncidentsService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        nats: tuple[NATS, JetStreamContext],
        config: IncidentsConfig,
        fusion: Fusion,
        reader: SignalReader,
    ) -> None:
        nc, js = nats
        self._pool = pool
        self.fusion = fusion
        self._reader = reader
        self.outbox = Outbox(pool, SERVICE)
        self._publisher = JetStreamPublisher(nc)
        self._relay = OutboxRelay(pool, self._publisher, SERVICE)
        alarms, floods = (
            ConsumerSpec(
                stream=channel.stream.name,
                durable=durable,
                filter_subject=channel.filter_subject,
                batch_max=config.batch_max,
                batch_max_bytes=config.batch_max_kb * 1024,
                batch_wait=config.batch_wait_ms / 1000,
                max_ack_pending=config.max_ack_pending,
                ack_wait=config.ack_wait_s,
            )
            for channel, durable in ((ALARM_CHANNEL, DURABLE), (FLOOD_CHANNEL, FLOOD_DURABLE))
        )
        # The inbox (skip_processed) makes a redelivered alarm a no-op before fusion sees it; the
        # entries' derived ids are the second guard.
        self._consumers = [
            DurableConsumer[AlarmMessage].in_units_of_work(
                js, alarms, read_alarm_message, self._fuse, self.outbox
            ),
            DurableConsumer[AlarmMessage].in_units_of_work(
                js, floods, read_flood_message, self._fuse, self.outbox
            ),
        ]
        self._stopping = asyncio.Event()
        self._gauges: asyncio.Task[None] | None = None
        self.consuming = False

    async def start(self) -> None:
        await self._publisher.start()
        self._relay.start()
        for consumer in self._consumers:
            await consumer.start()
        self.consuming = True
        self._gauges = asyncio.create_task(self._run_gauges(), name="incident-gauges")

    async def stop(self) -> None:
        self._stopping.set()
        if self._gauges is not None:
            self._gauges.cancel()
            await asyncio.wait([self._gauges], timeout=1.0)
        for consumer in self._consumers:
            await consumer.stop()
        self.consuming = False
        await self._relay.stop(grace=RELAY_GRACE_S)
        await self._publisher.close()

    # ------------------------------------------------------------------ fusion

    async def _fuse(self, messages: list[AlarmMessage], uow: UnitOfWork) -> Sequence[Rejection]:
        started = time.perf_counter()
        by_site: dict[tuple[str, str], list[Signal | FloodSignal]] = defaultdict(list)
        for message in messages:
            item: Signal | FloodSignal | None = message.flood or self._reader.signal(message)
            if item is not None:
                by_site[(item.tenant, item.site)].append(item)
        if by_site:
            metrics.SIGNALS.inc(sum(len(items) for items in by_site.values()))
            for locked in await repository.lock_sites(uow.connection, by_site):
                changes = self.fusion.apply(locked.state, by_site[(locked.tenant, locked.site)])
                incidents = {i.id: i for i in locked.state.incidents}
                entries = [
                    (Entry.of_fusion(c, incidents[c.incident_id].status, locked.tenant), c) for c in changes
                ]
                written = await repository.add_entries(uow.connection, [e for e, _ in entries])
                fresh = [(entry, change) for entry, change in entries if entry.id in written]
                for entry, _ in fresh:
                    incident = incidents[entry.incident_id]
                    incident.version += 1
                    incident.updated_at = max(incident.updated_at, entry.at)
                    locked.touched.add(incident.id)
                await repository.save_site(uow.connection, locked)
                for entry, change in fresh:
                    self._publish(uow, entry, incidents[entry.incident_id], change)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        return ()

    def _publish(
        self, uow: UnitOfWork, entry: Entry, incident: Incident, change: Change | None = None
    ) -> None:
        uow.emit(change_message(entry, incident))
        metrics.CHANGES.labels(entry.change).inc()
        log.info(
            "incident_changed",
            site=incident.site,
            incident_id=incident.id,
            alarm_id=entry.alarm_id,
            change=entry.change,
            status=str(incident.status),
            severity=str(incident.severity),
            actor=entry.actor,
            correlation_id=incident.correlation_id or None,
            cause=change.cause if change is not None else entry.cause,
        )

    def publish(self, uow: UnitOfWork, entry: Entry, incident: Incident) -> None:
        """Emit a person's change (the API's units of work)."""
        self._publish(uow, entry, incident)

    # ------------------------------------------------------------------ gauges

    async def _run_gauges(self) -> None:
        while not self._stopping.is_set():
            try:
                async with self._pool.acquire() as conn:
                    counts = await repository.open_by_severity(conn)
                for severity in ("Extreme", "Severe", "Moderate", "Minor", "Unknown"):
                    metrics.OPEN.labels(severity).set(counts.get(severity, 0))
            except TRANSIENT_DB_ERRORS as err:
                log.warning("incident_gauges_unavailable", error=str(err))
            except UnavailableError as err:
                log.warning("incident_gauges_unavailable", error=str(err))
            except Exception:  # never let the gauges die: the next pass tries again
                log.exception("incident_gauges_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), GAUGES_EVERY_S)
