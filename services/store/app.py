"""The store as a service of the hub: its declaration and what it runs in a process."""

from __future__ import annotations

from aiohttp import web

from services.common.kernel import PanelRow, Service, ServiceContext, ServiceInstance
from services.ingest.channel import OBSERVATIONS
from services.store import metrics
from services.store.api import StoreApi
from services.store.config import StoreConfig
from services.store.latest import LatestApi
from services.store.permissions import READ_OBSERVATIONS
from services.store.service import StoreService


class Store(ServiceInstance):
    def __init__(self, context: ServiceContext, config: StoreConfig) -> None:
        self._service = StoreService(context.pool, context.js, config)
        self._apis = (StoreApi(context.pool, context.sites), LatestApi(context.pool, context.sites))

    def add_routes(self, app: web.Application) -> None:
        for api in self._apis:
            api.add_routes(app)

    async def start(self) -> None:
        await self._service.start()

    async def stop(self) -> None:
        # The batch in hand is committed and acked.
        await self._service.stop()


STORE: Service[StoreConfig] = Service(
    name="store",
    description="JetStream OBSERVATIONS -> PostgreSQL, GET /v1/observations",
    config=StoreConfig,
    factory=Store,
    consumes=(OBSERVATIONS,),
    migrations="services.store",
    permissions=(READ_OBSERVATIONS,),
    panel=(
        PanelRow("Stored", metrics.STORED),
        PanelRow("Duplicates", metrics.DUPLICATES),
    ),
)
