"""A test-only service serving the alarm read API, for a real Hub in tests.

The alarm engine's own service declaration serves these routes in the product; this one lets the
read side be tested over HTTP against the engine's tables (its migrations) with rows written in
directly, and the shipped demo rules.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from services.alarms.permissions import READ_ALARMS
from services.alarms.read_api import AlarmReadApi
from services.alarms.rule_loader import load_rule_set
from services.common.kernel import Service, ServiceContext, ServiceInstance
from services.hub.registry import Registry
from services.ingest.app import INGEST
from services.store.app import STORE
from tests.conftest import REPO

DEMO_RULES = REPO / "sites" / "alarms" / "ulsan-demo.yaml"


class AlarmReadConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class _AlarmRead(ServiceInstance):
    def __init__(self, context: ServiceContext, config: AlarmReadConfig) -> None:
        rules = load_rule_set([DEMO_RULES], context.sites())
        self._api = AlarmReadApi(context.pool, context.sites, lambda: rules)

    def add_routes(self, app: web.Application) -> None:
        self._api.add_routes(app)


ALARM_READ: Service[AlarmReadConfig] = Service(
    name="alarm_read",
    description="GET /v1/alarms, /v1/alarms/{id}, /v1/alarms/kpis (tests)",
    config=AlarmReadConfig,
    factory=_AlarmRead,
    migrations="services.alarms",
    permissions=(READ_ALARMS,),
)

ALARM_READ_REGISTRY = Registry(services=(INGEST, STORE, ALARM_READ))
