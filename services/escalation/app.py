"""The escalation service as a service of the hub: its declaration and what it runs in a process."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from services.common.http.ops import ReadinessCheck
from services.common.kernel import PanelRow, Service, ServiceContext, ServiceInstance
from services.escalation import metrics
from services.escalation.admin_requests import MAX_BODY_BYTES
from services.escalation.config import EscalationConfig
from services.escalation.deliveries_api import DeliveriesApi
from services.escalation.endpoints_api import EndpointsApi
from services.escalation.maintenance_api import MaintenanceApi
from services.escalation.permissions import (
    MANAGE_DELIVERIES,
    MANAGE_ENDPOINTS,
    MANAGE_MAINTENANCE,
    MANAGE_POLICIES,
)
from services.escalation.policies_api import PoliciesApi
from services.escalation.service import EscalationService
from services.incidents.channel import INCIDENTS as INCIDENTS_STREAM


class Escalation(ServiceInstance):
    def __init__(self, context: ServiceContext, config: EscalationConfig) -> None:
        self.service = EscalationService(
            context.pool, context.js, config, context.sites, public_url=context.config.http.public_url
        )
        self._endpoints = EndpointsApi(context.pool, context.sites)
        self._deliveries = DeliveriesApi(context.pool)
        self._policies = PoliciesApi(context.pool, context.sites)
        self._maintenance = MaintenanceApi(context.pool, context.sites)

    def add_routes(self, app: web.Application) -> None:
        self._endpoints.add_routes(app)
        self._deliveries.add_routes(app)
        self._policies.add_routes(app)
        self._maintenance.add_routes(app)

    @property
    def max_body_bytes(self) -> int:
        return MAX_BODY_BYTES

    def readiness_checks(self) -> Mapping[str, ReadinessCheck]:
        async def consumer_running() -> str | None:
            return None if self.service.consuming else "escalation consumer not running"

        async def engine_running() -> str | None:
            return None if self.service.engine.running else "delivery engine not running"

        async def climber_running() -> str | None:
            running = self.service.climber.running and self.service.maintenance.running
            return None if running else "escalation timer not running"

        return {
            "escalation_consumer": consumer_running,
            "delivery_engine": engine_running,
            "escalation_timer": climber_running,
        }

    async def start(self) -> None:
        await self.service.start()

    async def stop(self) -> None:
        await self.service.stop()


ESCALATION: Service[EscalationConfig] = Service(
    name="escalation",
    description="JetStream INCIDENTS -> signed webhooks to the tenants' endpoints, retried, dead-lettered",
    config=EscalationConfig,
    factory=Escalation,
    consumes=(INCIDENTS_STREAM,),
    migrations="services.escalation",
    permissions=(MANAGE_ENDPOINTS, MANAGE_DELIVERIES, MANAGE_POLICIES, MANAGE_MAINTENANCE),
    panel=(
        PanelRow("Deliveries queued", metrics.QUEUED),
        PanelRow("Delivery attempts", metrics.ATTEMPTS, by="outcome"),
    ),
)
