"""The escalation service running: INCIDENTS in, deliveries queued in PostgreSQL, sent by the
delivery engine (engine.py).

The consumer `escalation` on `incident.>` handles each batch in one unit of work: for every change
of a kind delivered (config `changes`), the endpoints of the incident's tenant that take it (site,
minimum severity, type) and those already notified of the incident (an acknowledgement or the
resolution reaches everyone who heard of the opening, whatever the filters say now) get a
delivery row, rendered as the endpoint asked. A delivery's id (its `webhook-id`) is derived from
the change and the endpoint, so a redelivered message queues nothing twice (ON CONFLICT), and the
consumer is acked only after the commit.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import asyncpg
from nats.js import JetStreamContext

from services.common.bus.consumer import ConsumerSpec, DurableConsumer, Rejection
from services.common.contracts import incident_change_type
from services.common.logging import get_logger
from services.common.outbox import Outbox
from services.common.outbox.unit_of_work import UnitOfWork
from services.common.sites.registry import SiteRegistry
from services.escalation import metrics
from services.escalation.ack_links import AckLinks
from services.escalation.adapters import deliveries_db, endpoints_db
from services.escalation.adapters.deliveries_db import Queued
from services.escalation.adapters.incident_change import ChangeMessage, read_change
from services.escalation.climber import Climber, webhook_id
from services.escalation.config import EscalationConfig
from services.escalation.engine import DeliveryEngine
from services.escalation.maintenance_timer import MaintenanceTimer
from services.escalation.muting import mute, subject_of
from services.escalation.render import Renderer
from services.incidents.channel import INCIDENT_CHANNEL

log = get_logger(__name__)
SERVICE = "escalation"
DURABLE = "escalation"


class EscalationService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        config: EscalationConfig,
        sites: Callable[[], SiteRegistry],
        *,
        public_url: str = "",
    ) -> None:
        self._config = config
        self._pool = pool
        self._links = AckLinks(public_url, config.ack_link_ttl_h * 3600.0)
        self._renderer = Renderer(config.cap, sites, self._links)
        self._changes = frozenset(config.changes)
        self.outbox = Outbox(pool, SERVICE)
        spec = ConsumerSpec(
            stream=INCIDENT_CHANNEL.stream.name,
            durable=DURABLE,
            filter_subject=INCIDENT_CHANNEL.filter_subject,
            batch_max=config.batch_max,
            batch_wait=config.batch_wait_ms / 1000,
            max_ack_pending=config.max_ack_pending,
            ack_wait=config.ack_wait_s,
        )
        # Deduplicated by the deliveries' derived ids (ON CONFLICT), not by an inbox row per message.
        self._consumer = DurableConsumer[ChangeMessage].in_units_of_work(
            js, spec, read_change, self._queue, self.outbox, skip_processed=False
        )
        self.engine = DeliveryEngine(pool, config)
        self.climber = Climber(pool, self._renderer, poll_interval_s=config.poll_interval_s)
        self.maintenance = MaintenanceTimer(pool, poll_interval_s=config.poll_interval_s)
        self.consuming = False

    async def start(self) -> None:
        # The signing key before the first notification is rendered.
        await self._links.load(self._pool)
        await self.engine.start()
        await self.climber.start()
        await self.maintenance.start()
        await self._consumer.start()
        self.consuming = True

    async def stop(self) -> None:
        await self._consumer.stop()
        self.consuming = False
        # Side by side: each waits at most its own short grace on a database that may be frozen.
        await asyncio.gather(self.maintenance.stop(), self.climber.stop(), self.engine.stop())

    async def _queue(self, changes: list[ChangeMessage], uow: UnitOfWork) -> Sequence[Rejection]:
        conn = uow.connection
        endpoints = await endpoints_db.of_tenants(conn, sorted({c.tenant for c in changes}))
        # Policies first: a climb's first step is the opening's delivery to its endpoints.
        rows = await self.climber.on_changes(conn, changes, endpoints)
        wanted = [c for c in changes if c.change in self._changes]
        by_tenant: dict[str, list[str]] = defaultdict(list)
        for c in wanted:
            by_tenant[c.tenant].append(c.incident_id)
        heard = {(r.incident_id, r.endpoint_id) for r in rows}
        queued_ids = {r.id for r in rows}
        # The CAP alerts each endpoint has had of each incident, for the next one's references.
        earlier: dict[tuple[str, str], list[str]] = {}
        for tenant, incidents in by_tenant.items():
            heard |= await deliveries_db.notified(conn, tenant, incidents)
            if any(e.format == "cap" for e in endpoints[tenant]):
                earlier |= await deliveries_db.cap_references(conn, tenant, incidents)
        for row in rows:
            if row.cap_reference is not None:
                earlier.setdefault((row.incident_id, row.endpoint_id), []).append(row.cap_reference)
        for change in wanted:
            for endpoint in endpoints[change.tenant]:
                if not endpoint.enabled:
                    continue
                takes = endpoint.filter.takes(
                    site=change.site, severity=change.severity, incident_type=change.type
                )
                if not takes and (change.incident_id, endpoint.id) not in heard:
                    continue
                # Heard of it now: the changes after this one in the batch reach it too.
                heard.add((change.incident_id, endpoint.id))
                delivery_id = webhook_id(change.id, endpoint.id, change.at)
                if delivery_id in queued_ids:
                    continue  # its policy's first step has it already
                pair = (change.incident_id, endpoint.id)
                rendered = self._renderer.render(change, endpoint, delivery_id, earlier=earlier.get(pair, ()))
                if rendered.cap_reference is not None:
                    earlier.setdefault(pair, []).append(rendered.cap_reference)
                rows.append(
                    Queued(
                        id=delivery_id,
                        tenant=change.tenant,
                        endpoint_id=endpoint.id,
                        incident_id=change.incident_id,
                        site=change.site,
                        change=change.change,
                        event_type=incident_change_type(change.change),
                        body=rendered.body,
                        content_type=rendered.content_type,
                        created_at=change.at,
                        cap_reference=rendered.cap_reference,
                    )
                )
        # A maintenance window holds back what it mutes (recorded, not sent).
        subjects = {(c.tenant, c.incident_id): subject_of(c) for c in changes}
        rows = await mute(conn, rows, subjects, datetime.now(UTC))
        queued = await deliveries_db.queue(conn, rows, datetime.now(UTC))
        if queued:
            metrics.QUEUED.inc(queued)
            log.info("deliveries_queued", count=queued, changes=len(wanted))
        return ()
