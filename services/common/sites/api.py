"""GET /v1/sites: the caller's sites with their zones and devices, as the site files describe them.

What a client needs to know what it may post and read: each device's kinds and units. Every
role may read it (a gateway needs it most); a key sees its tenant's sites only, narrowed to the
sites it is limited to. The sites are the site files' own structures, so the answer follows the
documented file format (`version: 1`).
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from aiohttp import web

from services.common.http.middleware import principal_of
from services.common.http.problem import Problem
from services.common.sites.model import Site
from services.common.sites.registry import SiteRegistry


class SiteList(msgspec.Struct, frozen=True, kw_only=True):
    items: tuple[Site, ...]


class SitesApi:
    def __init__(self, registry: Callable[[], SiteRegistry]) -> None:
        self._registry = registry  # a function: the registry object is swapped on reload
        self._encoder = msgspec.json.Encoder()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/sites", self.list_sites)

    async def list_sites(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        if request.query:
            name = sorted(request.query)[0]
            raise Problem(
                400,
                "Invalid query",
                f"{name}: unknown parameter; this operation takes none",
                slug="invalid-query",
                errors=[{"field": name, "detail": "unknown parameter"}],
            )
        sites = tuple(
            site
            for site in self._registry().sites_of(principal.tenant)
            if principal.sites is None or site.id in principal.sites
        )
        return web.Response(body=self._encoder.encode(SiteList(items=sites)), content_type="application/json")
