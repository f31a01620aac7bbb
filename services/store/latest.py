"""GET /v1/devices/{device}/latest: a device's newest stored observation of each kind it measures.

What a dashboard shows for a detector right now. One query: for each kind the site files register
for the device, the newest row by (time, id), each found by one descent of the index
`observations_device_time (site, device, kind, time DESC, id DESC)` per partition.

A device the caller may not read answers exactly as one that does not exist (404), so a key
learns nothing about other tenants. Device ids are unique within a site only; when the caller's
sites hold several devices with the id, `site` must say which.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from services.common.auth.principal import Principal
from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.common.http.middleware import principal_of
from services.common.http.problem import Problem, invalid_query
from services.common.sites.model import Device, Site
from services.common.sites.registry import SiteRegistry
from services.store.permissions import READ_OBSERVATIONS
from services.store.query import to_json

_PARAMS = frozenset({"site"})

# unnest WITH ORDINALITY keeps the kinds in the order the site file lists them.
LATEST_SQL = """
SELECT o.* FROM unnest($4::text[]) WITH ORDINALITY AS k(kind, n)
CROSS JOIN LATERAL (
    SELECT id, time, tenant, site, device, kind, value, unit, quality, confidence, snapshot, detail,
           received, stored
    FROM observations
    WHERE site = $2 AND device = $3 AND kind = k.kind AND tenant = $1
    ORDER BY time DESC, id DESC
    LIMIT 1
) AS o
ORDER BY k.n
"""



def find_device(
    registry: SiteRegistry, principal: Principal, device_id: str, site_id: str | None
) -> tuple[Site, Device]:
    """The device the caller means, among the sites it may read; raises a Problem otherwise."""
    readable = [
        site
        for site in registry.sites_of(principal.tenant)
        if principal.sites is None or site.id in principal.sites
    ]
    if site_id is not None:
        readable = [site for site in readable if site.id == site_id]
    found = [(site, device) for site in readable if (device := registry.device(site.id, device_id))]
    if not found:
        # The same answer for a device that does not exist, one of another tenant and one
        # outside the key's sites: built from the request alone.
        where = f" at site '{site_id}'" if site_id is not None else ""
        raise Problem(404, "Not found", f"no device '{device_id}'{where} that this key may read")
    if len(found) > 1:
        sites = ", ".join(site.id for site, _ in found)
        raise invalid_query("site", f"device '{device_id}' is at several sites ({sites}); name one")
    return found[0]


class LatestApi:
    def __init__(self, pool: asyncpg.Pool, registry: Callable[[], SiteRegistry]) -> None:
        self._pool = pool
        self._registry = registry  # a function: the registry object is swapped on reload

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/devices/{device}/latest", self.latest)

    async def latest(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        if not principal.may(READ_OBSERVATIONS):
            raise Problem(403, "Forbidden", f"role '{principal.role}' may not read observations")
        unknown = sorted(set(request.query) - _PARAMS)
        if unknown:
            raise invalid_query(unknown[0], f"unknown parameter; known are {', '.join(sorted(_PARAMS))}")
        site, device = find_device(
            self._registry(), principal, request.match_info["device"], request.query.get("site")
        )
        kinds = [measure.kind for measure in device.measures]
        try:
            rows = await self._pool.fetch(LATEST_SQL, principal.tenant, site.id, device.id, kinds)
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        body: dict[str, Any] = {"site": site.id, "device": device.id, "items": [to_json(r) for r in rows]}
        return web.Response(body=msgspec.json.encode(body), content_type="application/json")
