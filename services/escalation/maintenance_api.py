"""The maintenance windows API (role admin; a key limited to sites sees and manages theirs only).

    POST   /v1/maintenance-windows             create
    GET    /v1/maintenance-windows?site=&active=true
    GET    /v1/maintenance-windows/{id}        one
    PUT    /v1/maintenance-windows/{id}        replace (its version goes up by one)
    DELETE /v1/maintenance-windows/{id}        delete; what it held is looked at again at once

A window mutes the non-safety notifications of a site (or one zone of it) while one of its
occurrences runs: one-off, RRULE or cron, in the site's time zone unless it names another. A
schedule that cannot be (an RRULE that does not parse or recurs more than hourly, an end before
its start, a zone the site does not have) is 422 naming the field. Another tenant's window, or one
of a site the key is not limited to, is 404. Audited.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from aiohttp import web

from services.common.audit import AuditEntry, record
from services.common.auth.principal import Principal
from services.common.contracts.ids import new_id
from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.common.http.problem import Problem, invalid_query
from services.escalation.adapters import maintenance_db
from services.escalation.adapters.maintenance_db import WindowRow
from services.escalation.admin_requests import AdminApi, body_of, permitted
from services.escalation.admin_requests import invalid as invalid_of
from services.escalation.api_bodies import SiteId
from services.escalation.domain.maintenance import InvalidWindow, MaintenanceWindow, decode_window
from services.escalation.domain.maintenance_windows import current
from services.escalation.endpoints_api import ENDPOINT_ID
from services.escalation.maintenance_timer import first_reminder
from services.escalation.permissions import MANAGE_MAINTENANCE
from services.incidents.read_json import rfc3339

MAX_BODY_BYTES = 16 * 1024
DEFAULT_LEAD_S = 15 * 60
_LIST_PARAMS = frozenset({"site", "active"})


class WindowBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True, rename="camel"):
    site: SiteId
    # Checked by the domain (decode_window), which names the field inside it: schedule.rrule.
    schedule: msgspec.Raw
    zone: Annotated[str, msgspec.Meta(min_length=1, max_length=63)] | None = None
    # An IANA time zone; the site's when not given.
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    reason: Annotated[str, msgspec.Meta(max_length=1000)] = ""
    # How long before an occurrence ends its reminder is sent (a week at most).
    reminder_lead_s: Annotated[float, msgspec.Meta(gt=0, le=7 * 24 * 3600)] = DEFAULT_LEAD_S


def invalid(field: str, detail: str) -> Problem:
    return invalid_of("maintenance window", field, detail)


def window_json(row: WindowRow, now: datetime) -> dict[str, Any]:
    w = row.window
    running = current(w, now)
    return {
        "id": w.id,
        "site": w.site,
        "zone": w.zone,
        "timezone": w.timezone,
        "schedule": msgspec.to_builtins(w.schedule),
        "reason": w.reason,
        "reminderLeadS": row.reminder_lead_s,
        "active": running is not None,
        "activeUntil": rfc3339(running.end) if running is not None else None,
        "nextReminderAt": rfc3339(row.remind_at),
        "createdBy": row.created_by,
        "updatedBy": row.updated_by,
        "createdAt": rfc3339(row.created_at),
        "updatedAt": rfc3339(row.updated_at),
        "version": row.version,
    }


class MaintenanceApi(AdminApi):
    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/maintenance-windows", self.create)
        app.router.add_get("/v1/maintenance-windows", self.list_windows)
        app.router.add_get("/v1/maintenance-windows/{id}", self.one)
        app.router.add_put("/v1/maintenance-windows/{id}", self.replace)
        app.router.add_delete("/v1/maintenance-windows/{id}", self.delete)

    # ------------------------------------------------------------------ checks

    @staticmethod
    def _principal(request: web.Request, params: Collection[str] = ()) -> Principal:
        return permitted(request, MANAGE_MAINTENANCE, "manage maintenance windows", params)

    def _zones_of(self, principal: Principal) -> Callable[[str], Collection[str] | None]:
        """The zones of a site the key may manage; None for any other site."""
        own = {s.id: s for s in self._sites().sites_of(principal.tenant)}

        def zones_of(site_id: str) -> Collection[str] | None:
            site = own.get(site_id)
            if site is None or (principal.sites is not None and site_id not in principal.sites):
                return None
            return {z.id for z in site.zones}

        return zones_of

    async def _window(
        self, request: web.Request, principal: Principal, window_id: str
    ) -> tuple[WindowBody, MaintenanceWindow]:
        body: WindowBody = await body_of(request, WindowBody, "maintenance window", limit=MAX_BODY_BYTES)
        site = self._sites().site(body.site)
        timezone = body.timezone or (site.timezone if site is not None else "UTC")
        raw = msgspec.json.encode(
            {
                "id": window_id,
                "site": body.site,
                "zone": body.zone,
                "timezone": timezone,
                "schedule": body.schedule,
                "reason": body.reason,
            }
        )
        try:
            window = decode_window(raw, zones_of=self._zones_of(principal))
        except InvalidWindow as err:
            field = err.field or "schedule"
            detail = err.message
            if field == "site":
                detail = f"'{body.site[:64]}' is not a site of the tenant that this key may manage"
            raise invalid(field, detail) from None
        return body, window

    async def _existing(self, conn: asyncpg.Connection, principal: Principal, window_id: str) -> WindowRow:
        found = None
        if ENDPOINT_ID.match(window_id):
            found = await maintenance_db.load(conn, principal.tenant, window_id, lock=True)
        if found is not None and principal.sites is not None and found.window.site not in principal.sites:
            found = None
        if found is None:
            raise Problem(
                404, "Not found", f"no maintenance window '{window_id[:64]}' that this key may manage"
            )
        return found

    @staticmethod
    def _json(body: object, status: int = 200) -> web.Response:
        return web.Response(status=status, body=msgspec.json.encode(body), content_type="application/json")

    @staticmethod
    async def _audit(
        conn: asyncpg.Connection,
        principal: Principal,
        request: web.Request,
        action: str,
        window: MaintenanceWindow,
    ) -> None:
        detail = {"site": window.site, "zone": window.zone}
        await record(
            conn, AuditEntry.by(principal, action, target=window.id, source=request.remote, detail=detail)
        )

    # ------------------------------------------------------------------ routes

    async def create(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        body, window = await self._window(request, principal, new_id())
        now = self._clock()
        row = WindowRow(
            tenant=principal.tenant,
            window=window,
            reminder_lead_s=body.reminder_lead_s,
            remind_at=first_reminder(window, body.reminder_lead_s, now),
            reminded_until=None,
            created_by=principal.actor,
            updated_by=principal.actor,
            created_at=now,
            updated_at=now,
            version=1,
        )
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await maintenance_db.save(conn, row)
                await maintenance_db.recheck_site(conn, row.tenant, window.site, now)
                await self._audit(conn, principal, request, "maintenance_window.created", window)
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        return self._json(window_json(row, now), 201)

    async def list_windows(self, request: web.Request) -> web.Response:
        principal = self._principal(request, _LIST_PARAMS)
        query = request.query
        active = query.get("active")
        if active is not None and active not in ("true", "false"):
            raise invalid_query("active", "expected true or false")
        sites: list[str] | None = sorted(principal.sites) if principal.sites is not None else None
        if "site" in query:
            # A site of another tenant, or none at all, has no windows to show: an empty list,
            # and nothing the caller typed goes to the database unchecked.
            wanted = query["site"]
            own = {s.id for s in self._sites().sites_of(principal.tenant)}
            sites = [wanted] if wanted in own and (sites is None or wanted in sites) else []
        try:
            rows = await maintenance_db.of_tenant(self._pool, principal.tenant, sites)
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        now = self._clock()
        items = [window_json(r, now) for r in rows]
        if active is not None:
            items = [i for i in items if i["active"] is (active == "true")]
        return self._json({"items": items})

    async def one(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await self._existing(conn, principal, request.match_info["id"])
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        return self._json(window_json(row, self._clock()))

    async def replace(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        window_id = request.match_info["id"]
        # Read before the transaction: a slow client holds no connection.
        body, window = await self._window(request, principal, window_id)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                old = await self._existing(conn, principal, window_id)
                now = self._clock()
                row = WindowRow(
                    tenant=principal.tenant,
                    window=window,
                    reminder_lead_s=body.reminder_lead_s,
                    remind_at=first_reminder(window, body.reminder_lead_s, now),
                    # An occurrence already reminded of is not reminded of again; one whose end
                    # moved is a new one.
                    reminded_until=old.reminded_until,
                    created_by=old.created_by,
                    updated_by=principal.actor,
                    created_at=old.created_at,
                    updated_at=now,
                    version=old.version + 1,
                )
                await maintenance_db.save(conn, row)
                for site in {old.window.site, window.site}:
                    await maintenance_db.recheck_site(conn, row.tenant, site, now)
                await self._audit(conn, principal, request, "maintenance_window.updated", window)
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        return self._json(window_json(row, now))

    async def delete(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                old = await self._existing(conn, principal, request.match_info["id"])
                await maintenance_db.delete(conn, principal.tenant, old.id)
                await maintenance_db.recheck_site(conn, principal.tenant, old.window.site, self._clock())
                await self._audit(conn, principal, request, "maintenance_window.deleted", old.window)
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        return web.Response(status=204)
