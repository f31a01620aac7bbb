"""A toy service, declared the way a real one is: the registry is all the hub learns it from.

It owns a stream (TOYS, limits under `bus.toys`), a table (migrations/), a config section
(`toy:`), a public route and a guarded one with a permission of its own, a readiness check and a
row of the live view.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from aiohttp import web
from prometheus_client import Counter

from services.common.auth.principal import Permission
from services.common.bus.streams import StreamDef
from services.common.http.middleware import principal_of
from services.common.http.ops import ReadinessCheck
from services.common.http.problem import Problem
from services.common.kernel import PanelRow, Service, ServiceContext, ServiceInstance

PINGS = Counter("safetyhub_toy_pings", "Pings the toy service answered")
READ_NOTES = Permission("toy.notes.read", frozenset({"viewer"}), "read toy notes")
TOYS = StreamDef("TOYS", ("toy.>",), "The toy service's messages", config_key="toys")


class ToyConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    greeting: str = "hello"


class Toy(ServiceInstance):
    def __init__(self, context: ServiceContext, config: ToyConfig) -> None:
        self._context = context
        self._config = config
        self.started = False

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/toy/ping", self._ping)
        app.router.add_get("/v1/toy/notes", self._notes)

    def readiness_checks(self) -> Mapping[str, ReadinessCheck]:
        async def started() -> str | None:
            return None if self.started else "not started"

        return {"started": started}

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False

    async def _ping(self, _: web.Request) -> web.Response:
        PINGS.inc()
        return web.json_response({"greeting": self._config.greeting})

    async def _notes(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        if not principal.may(READ_NOTES):
            raise Problem(403, "Forbidden", f"role '{principal.role}' may not read toy notes")
        async with self._context.pool.acquire() as conn:
            count = await conn.fetchval("SELECT count(*) FROM toy_notes")
        return web.json_response({"notes": count})


TOY: Service[ToyConfig] = Service(
    name="toy",
    description="a toy: a greeting and a table of notes",
    config=ToyConfig,
    factory=Toy,
    streams=(TOYS,),
    migrations="tests.toy_service",
    permissions=(READ_NOTES,),
    public_paths=frozenset({"/toy/ping"}),
    panel=(PanelRow("Pings", PINGS),),
)
