"""The incidents service as a service of the hub: its declaration and what it runs in a process."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiohttp import web

from services.alarms.app import ALARMS
from services.alarms.channel import ALARMS as ALARMS_STREAM
from services.alarms.rules_reload import Rules, rule_patterns
from services.common.http.ops import ReadinessCheck
from services.common.kernel import PanelRow, Service, ServiceContext, ServiceInstance
from services.incidents import metrics
from services.incidents.ack_api import PREFIX as ACK_PREFIX
from services.incidents.ack_api import AckLinkApi
from services.incidents.actions_api import MAX_BODY_BYTES, IncidentActionsApi
from services.incidents.adapters.signals import SignalReader
from services.incidents.attachments_api import MAX_ATTACHMENT_BODY, IncidentAttachmentsApi
from services.incidents.channel import INCIDENTS as INCIDENTS_STREAM
from services.incidents.config import IncidentsConfig
from services.incidents.domain.fusion import Fusion
from services.incidents.domain.rules import DEFAULT_RULES
from services.incidents.live_stream import LiveFeed
from services.incidents.permissions import ASSIGN_INCIDENTS, READ_INCIDENTS, WORK_INCIDENTS
from services.incidents.read_api import IncidentReadApi
from services.incidents.service import IncidentsService
from services.incidents.stream_api import StreamApi


class Incidents(ServiceInstance):
    def __init__(self, context: ServiceContext, config: IncidentsConfig) -> None:
        # The alarm rules tell an alarm's kind (the ALARMS stream names its rule, not its kind):
        # the same files the alarm engine reads, reloaded the same way.
        alarms = ALARMS.section(context.config)
        patterns = rule_patterns(alarms.rules, context.config.sites, context.base)
        self._rules = Rules(patterns, context.sites, explicit=alarms.rules is not None)
        self._reload_s = context.config.sites_reload_s
        fusion = Fusion(config.fusion_rules if config.fusion_rules is not None else DEFAULT_RULES)
        reader = SignalReader(context.sites, self._rules.rules)
        self.service = IncidentsService(context.pool, (context.nc, context.js), config, fusion, reader)
        self._reads = IncidentReadApi(context.pool, context.sites)
        self._actions = IncidentActionsApi(self.service, self._reads)
        self._attachments = IncidentAttachmentsApi(context.pool, self.service, self._reads)
        self._ack_links = AckLinkApi(context.pool, self.service, context.sites)
        # One subscription per stream for every live client of this process.
        self._feed = LiveFeed(context.js, queue_max=config.stream_queue_max)
        self._stream = StreamApi(self._feed, context.pool, context.sites, config)

    def add_routes(self, app: web.Application) -> None:
        self._reads.add_routes(app)
        self._actions.add_routes(app)
        self._attachments.add_routes(app)
        self._ack_links.add_routes(app)
        self._stream.add_routes(app)

    @property
    def max_body_bytes(self) -> int:
        # A photo is the largest body; every route bounds its own body below this.
        return max(MAX_BODY_BYTES, MAX_ATTACHMENT_BODY)

    def readiness_checks(self) -> Mapping[str, ReadinessCheck]:
        async def rules_loaded() -> str | None:
            return None if self._rules.ready else "alarm rules not loaded for incident fusion"

        async def consumer_running() -> str | None:
            return None if self.service.consuming else "incident consumers not running"

        async def live_stream_running() -> str | None:
            return None if self._feed.running else "live stream subscription not running"

        return {
            "incident_rules": rules_loaded,
            "incident_consumer": consumer_running,
            "incident_live_stream": live_stream_running,
        }

    async def start(self) -> None:
        # Read before the consumers start: an alarm fused before its rule is known has no kind.
        await asyncio.to_thread(self._rules.load)
        await self.service.start()
        await self._feed.start()
        self._rules.start(self._reload_s)

    async def stop(self) -> None:
        await self._rules.stop()
        await self._feed.stop()
        await self.service.stop()


INCIDENTS: Service[IncidentsConfig] = Service(
    name="incidents",
    description="JetStream ALARMS -> incidents (fusion, lifecycle) in PostgreSQL and on INCIDENTS",
    config=IncidentsConfig,
    factory=Incidents,
    streams=(INCIDENTS_STREAM,),
    consumes=(ALARMS_STREAM,),
    migrations="services.incidents",
    permissions=(READ_INCIDENTS, WORK_INCIDENTS, ASSIGN_INCIDENTS),
    # The acknowledgement links: their signed token is their only credential (ack_api.py).
    public_prefixes=(ACK_PREFIX,),
    panel=(
        PanelRow("Open incidents", metrics.OPEN, by="severity"),
        PanelRow("Incident changes", metrics.CHANGES),
    ),
)
