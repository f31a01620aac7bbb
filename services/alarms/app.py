"""The alarm engine as a service of the hub: its declaration and what it runs in a process."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import asyncpg
from aiohttp import web

from services.alarms import metrics
from services.alarms.actions_api import MAX_BODY_BYTES, AlarmActionsApi
from services.alarms.channel import ALARMS as ALARMS_STREAM
from services.alarms.config import AlarmsConfig
from services.alarms.domain.rules import RuleSet
from services.alarms.live import LiveFigures
from services.alarms.permissions import ACT_ON_ALARMS, READ_ALARMS
from services.alarms.read_api import AlarmReadApi
from services.alarms.rules_reload import Rules, rule_patterns
from services.alarms.service import AlarmsService
from services.common.http.ops import ReadinessCheck
from services.common.kernel import PanelRow, Service, ServiceContext, ServiceInstance
from services.ingest.channel import OBSERVATIONS


class Alarms(ServiceInstance):
    def __init__(self, context: ServiceContext, config: AlarmsConfig) -> None:
        patterns = rule_patterns(config.rules, context.config.sites, context.base)
        self._rules = Rules(patterns, context.sites, explicit=config.rules is not None)
        self._reload_s = context.config.sites_reload_s
        self.pool: asyncpg.Pool = context.pool
        self.service = AlarmsService(context.pool, context.nc, context.js, config, self._rules)
        self._actions = AlarmActionsApi(self.service, self._rules.engine, context.sites)
        self._reads = AlarmReadApi(context.pool, context.sites, self.rules)
        self._live = LiveFigures(context.pool)

    def rules(self) -> RuleSet:
        """The rule set in use now (a reload swaps it): for the read API."""
        return self._rules.rules()

    def add_routes(self, app: web.Application) -> None:
        self._reads.add_routes(app)
        self._actions.add_routes(app)

    @property
    def max_body_bytes(self) -> int:
        return MAX_BODY_BYTES

    def readiness_checks(self) -> Mapping[str, ReadinessCheck]:
        async def rules_loaded() -> str | None:
            return None if self._rules.ready else "alarm rules not loaded"

        async def consumer_running() -> str | None:
            return None if self.service.consuming else "alarm consumer not running"

        return {"alarm_rules": rules_loaded, "alarm_consumer": consumer_running}

    async def start(self) -> None:
        # Read in a thread, before the consumer starts: invalid rules stop start-up with file,
        # line and key.
        await asyncio.to_thread(self._rules.load)
        await self.service.start()
        self._rules.start(self._reload_s)
        self._live.start()

    async def stop(self) -> None:
        await self._live.stop()
        await self._rules.stop()
        await self.service.stop()


ALARMS: Service[AlarmsConfig] = Service(
    name="alarms",
    description="JetStream OBSERVATIONS -> ISA-18.2 alarms in PostgreSQL and on ALARMS; alarm API and KPIs",
    config=AlarmsConfig,
    factory=Alarms,
    streams=(ALARMS_STREAM,),
    consumes=(OBSERVATIONS,),
    migrations="services.alarms",
    permissions=(READ_ALARMS, ACT_ON_ALARMS),
    panel=(
        PanelRow("Active alarms", metrics.ACTIVE, by="priority"),
        PanelRow("Sites in flood", metrics.SITES_IN_FLOOD),
        PanelRow("Alarm transitions", metrics.TRANSITIONS),
    ),
)
