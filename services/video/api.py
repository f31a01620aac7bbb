"""GET /v1/snapshots/{ref} and /v1/snapshots/{ref}/blurred: a detection's JPEG snapshot.

Served to callers of the camera's tenant and sites; to anyone else a snapshot that exists is
answered exactly as one that does not (404), so a reference tells no one about other tenants.
The blurred copy (faces pixelated) is the one meant to leave the tenant.
"""

from __future__ import annotations

import re

import asyncpg
from aiohttp import web

from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.common.http.middleware import principal_of
from services.common.http.problem import Problem
from services.video.adapters import snapshots
from services.video.permissions import READ_SNAPSHOTS

# A ULID, as the service names snapshots.
_REF = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}\Z")


class SnapshotApi:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/snapshots/{ref}", self.raw)
        app.router.add_get("/v1/snapshots/{ref}/blurred", self.blurred)

    async def raw(self, request: web.Request) -> web.Response:
        return await self._image(request, blurred=False)

    async def blurred(self, request: web.Request) -> web.Response:
        return await self._image(request, blurred=True)

    async def _image(self, request: web.Request, *, blurred: bool) -> web.Response:
        principal = principal_of(request)
        if not principal.may(READ_SNAPSHOTS):
            raise Problem(403, "Forbidden", f"role '{principal.role}' may not read snapshots")
        ref = request.match_info["ref"]
        found = None
        if _REF.match(ref):
            try:
                found = await snapshots.fetch(self._pool, ref, blurred=blurred)
            except TRANSIENT_DB_ERRORS as err:
                raise UnavailableError("PostgreSQL is unreachable") from err
        if (
            found is None
            or found.tenant != principal.tenant
            or (principal.sites is not None and found.site not in principal.sites)
        ):
            raise Problem(404, "Not found", f"no snapshot '{ref}' that this key may read")
        return web.Response(
            body=found.image,
            content_type="image/jpeg",
            headers={"Cache-Control": "private, max-age=86400"},  # a snapshot never changes
        )
