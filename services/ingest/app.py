"""Ingest as a service of the hub: its declaration and what it runs in a process."""

from __future__ import annotations

from aiohttp import web

from services.common.bus.channel import ChannelPublisher
from services.common.bus.publisher import JetStreamPublisher
from services.common.kernel import PanelRow, Service, ServiceContext, ServiceInstance
from services.ingest import metrics
from services.ingest.api import IngestApi
from services.ingest.channel import OBSERVATION_CHANNEL, OBSERVATIONS
from services.ingest.config import IngestConfig
from services.ingest.permissions import POST_OBSERVATIONS


class Ingest(ServiceInstance):
    def __init__(self, context: ServiceContext, config: IngestConfig) -> None:
        self._publisher = JetStreamPublisher(context.nc, max_in_flight=config.max_in_flight)
        self._api = IngestApi(
            context.sites,
            ChannelPublisher(OBSERVATION_CHANNEL, self._publisher),
            config,
            body_timeout_s=context.config.http.body_timeout_s,
        )
        self._max_body = config.max_body_mb * 1024 * 1024

    def add_routes(self, app: web.Application) -> None:
        self._api.add_routes(app)

    @property
    def max_body_bytes(self) -> int:
        return self._max_body

    async def start(self) -> None:
        await self._publisher.start()

    async def stop(self) -> None:
        # HTTP intake stopped first, so no request is still waiting for an acknowledgement.
        await self._publisher.close()


INGEST: Service[IngestConfig] = Service(
    name="ingest",
    description="POST /v1/observations -> JetStream OBSERVATIONS",
    config=IngestConfig,
    factory=Ingest,
    streams=(OBSERVATIONS,),
    permissions=(POST_OBSERVATIONS,),
    panel=(
        PanelRow("Received", metrics.RECEIVED),
        PanelRow("Accepted", metrics.ACCEPTED),
        PanelRow("Rejected", metrics.REJECTED, by="reason"),
        PanelRow("Duplicates", metrics.DUPLICATES),
        PanelRow("Out of range", metrics.OUT_OF_RANGE, by="kind"),
    ),
)
