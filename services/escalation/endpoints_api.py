"""The endpoints API (role admin): where the tenant's incidents are delivered.

    POST   /v1/endpoints                     create; the answer shows the secret, once
    GET    /v1/endpoints                     list
    GET    /v1/endpoints/{id}                one
    PATCH  /v1/endpoints/{id}                change (JSON merge of the fields given)
    DELETE /v1/endpoints/{id}                delete; what was still to be sent to it is cancelled
    POST   /v1/endpoints/{id}/rotate-secret  a new secret, shown once; the previous one keeps
                                             signing (beside it) for `overlapS` seconds

Another tenant's endpoint, or one outside the sites of a key limited to sites, is 404. Every
change is audited in the transaction that makes it. A field that cannot be is 422 naming it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from services.common.audit import AuditEntry, record
from services.common.auth.principal import Principal
from services.common.contracts.ids import new_id
from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.common.http.problem import Problem
from services.escalation.adapters import endpoints_db
from services.escalation.adapters.endpoints_db import EndpointRow
from services.escalation.adapters.secrets import new_secret, secret_problem
from services.escalation.admin_requests import AdminApi, body_of, permitted
from services.escalation.api_bodies import (
    EndpointChange,
    NewEndpoint,
    Rotation,
    invalid_field,
)
from services.escalation.domain.endpoint import (
    HubAddress,
    InvalidEndpoint,
    check_headers,
    check_url,
)
from services.escalation.permissions import MANAGE_ENDPOINTS
from services.incidents.read_json import rfc3339

# The formats rendered (render.py): a CloudEvent in JSON, or a CAP 1.2 alert.
SUPPORTED_FORMATS = ("json", "cap")
ENDPOINT_ID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}\Z")


def endpoint_json(e: EndpointRow) -> dict[str, Any]:
    return {
        "id": e.id,
        "name": e.name,
        "url": e.url,
        "format": e.format,
        "language": e.language,
        "sites": e.sites,
        "minSeverity": e.min_severity,
        "types": e.types,
        # Names only: a header may carry the receiver's own credential.
        "headers": sorted(e.headers),
        "enabled": e.enabled,
        "disabledReason": e.disabled_reason or None,
        "previousSecretUntil": rfc3339(e.previous_until),
        "breakerOpenUntil": rfc3339(e.breaker_until),
        "createdAt": rfc3339(e.created_at),
        "updatedAt": rfc3339(e.updated_at),
    }


def not_found(endpoint_id: str) -> Problem:
    shown = endpoint_id if len(endpoint_id) <= 64 else endpoint_id[:64] + "..."
    return Problem(404, "Not found", f"no endpoint '{shown}' that this key may manage")


def hub_addresses(request: web.Request) -> list[HubAddress]:
    """Where this request reached the hub: the Host it named and the socket it came in on."""
    found = []
    host, port = request.url.host, request.url.port
    if host and port:
        found.append(HubAddress(host, port))
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        found.append(HubAddress(str(sockname[0]), int(sockname[1])))
    return found


def visible(principal: Principal, e: EndpointRow) -> bool:
    """A key limited to sites manages only endpoints limited to some of those sites."""
    if principal.sites is None:
        return True
    return e.sites is not None and set(e.sites) <= principal.sites


class EndpointsApi(AdminApi):
    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/endpoints", self.create)
        app.router.add_get("/v1/endpoints", self.list_endpoints)
        app.router.add_get("/v1/endpoints/{id}", self.one)
        app.router.add_patch("/v1/endpoints/{id}", self.change)
        app.router.add_delete("/v1/endpoints/{id}", self.delete)
        app.router.add_post("/v1/endpoints/{id}/rotate-secret", self.rotate)

    # ------------------------------------------------------------------ helpers

    def _principal(self, request: web.Request) -> Principal:
        return permitted(request, MANAGE_ENDPOINTS, "manage endpoints")

    def _check_sites(self, principal: Principal, sites: list[str] | None) -> list[str] | None:
        if sites is None:
            if principal.sites is not None:
                raise invalid_field("sites", "required: this key may manage only some sites; name them")
            return None
        if not sites:
            raise invalid_field("sites", "empty: give at least one site, or leave it out for all")
        own = {s.id for s in self._sites().sites_of(principal.tenant)}
        for site in sites:
            if site not in own or (principal.sites is not None and site not in principal.sites):
                raise invalid_field("sites", f"'{site[:64]}' is not a site this key may manage")
        return sorted(set(sites))

    @staticmethod
    def _check_format(format_: str) -> None:
        if format_ not in SUPPORTED_FORMATS:
            raise invalid_field(
                "format", f"'{format_}' is not yet supported; supported: {', '.join(SUPPORTED_FORMATS)}"
            )

    @staticmethod
    def _check(request: web.Request, url: str, headers: dict[str, str]) -> dict[str, str]:
        try:
            check_url(url, hub_addresses(request))
            return check_headers(headers)
        except InvalidEndpoint as err:
            raise invalid_field(err.field, err.detail) from None

    async def _endpoint(
        self, conn: asyncpg.Connection, principal: Principal, endpoint_id: str
    ) -> EndpointRow:
        found = None
        if ENDPOINT_ID.match(endpoint_id):
            found = await endpoints_db.load(conn, principal.tenant, endpoint_id, lock=True)
        if found is None or not visible(principal, found):
            raise not_found(endpoint_id)
        return found

    @staticmethod
    def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status, body=msgspec.json.encode(body), content_type="application/json", headers=headers
        )

    # ------------------------------------------------------------------ routes

    async def create(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        body: NewEndpoint = await body_of(request, NewEndpoint, "endpoint")
        headers = self._check(request, body.url, body.headers)
        self._check_format(body.format)
        sites = self._check_sites(principal, body.sites)
        secret = body.secret if body.secret is not None else new_secret()
        problem = secret_problem(secret)
        if problem is not None:
            raise invalid_field("secret", problem)
        now = self._clock()
        endpoint = EndpointRow(
            tenant=principal.tenant,
            id=new_id(),
            name=body.name,
            url=body.url,
            format=body.format,
            language=body.language,
            sites=sites,
            min_severity=body.min_severity,
            types=sorted(set(body.types)) if body.types is not None else None,
            headers=headers,
            secret=secret,
            previous_secret=None,
            previous_until=None,
            enabled=body.enabled,
            disabled_reason="" if body.enabled else "created disabled",
            failures=0,
            breaker_until=None,
            created_at=now,
            updated_at=now,
        )
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await endpoints_db.insert(conn, endpoint)
                await record(
                    conn,
                    AuditEntry.by(
                        principal,
                        "endpoint.created",
                        target=endpoint.id,
                        source=request.remote,
                        detail={"url": endpoint.url, "sites": sites, "format": endpoint.format},
                    ),
                )
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        answer = endpoint_json(endpoint)
        answer["secret"] = secret  # shown this once
        return self._json(answer, 201, {"Location": f"/v1/endpoints/{endpoint.id}"})

    async def list_endpoints(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        try:
            rows = await endpoints_db.of_tenant(self._pool, principal.tenant)
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        return self._json({"items": [endpoint_json(e) for e in rows if visible(principal, e)]})

    async def one(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                endpoint = await self._endpoint(conn, principal, request.match_info["id"])
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        return self._json(endpoint_json(endpoint))

    async def change(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        body: EndpointChange = await body_of(request, EndpointChange, "endpoint")
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                e = await self._endpoint(conn, principal, request.match_info["id"])
                changed = sorted(f for f in body.__struct_fields__ if getattr(body, f) is not msgspec.UNSET)
                if body.url is not msgspec.UNSET:
                    e.url = body.url
                if body.headers is not msgspec.UNSET:
                    e.headers = body.headers
                e.headers = self._check(request, e.url, e.headers)
                if body.format is not msgspec.UNSET:
                    self._check_format(body.format)
                    e.format = body.format
                if body.name is not msgspec.UNSET:
                    e.name = body.name
                if body.language is not msgspec.UNSET:
                    e.language = body.language
                if body.sites is not msgspec.UNSET:
                    e.sites = self._check_sites(principal, body.sites)
                if body.min_severity is not msgspec.UNSET:
                    e.min_severity = body.min_severity
                if body.types is not msgspec.UNSET:
                    e.types = sorted(set(body.types)) if body.types is not None else None
                if body.enabled is not msgspec.UNSET and body.enabled != e.enabled:
                    e.enabled = body.enabled
                    # Enabled again by a person: the breaker and a 410's verdict are forgotten.
                    e.disabled_reason = "" if e.enabled else f"disabled by {principal.actor}"
                    e.failures, e.breaker_until = 0, None
                e.updated_at = self._clock()
                await endpoints_db.update(conn, e)
                await record(
                    conn,
                    AuditEntry.by(
                        principal,
                        "endpoint.updated",
                        target=e.id,
                        source=request.remote,
                        detail={"fields": changed, "url": e.url, "enabled": e.enabled},
                    ),
                )
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        return self._json(endpoint_json(e))

    async def delete(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                e = await self._endpoint(conn, principal, request.match_info["id"])
                cancelled = await endpoints_db.delete(conn, e.tenant, e.id, self._clock())
                await record(
                    conn,
                    AuditEntry.by(
                        principal,
                        "endpoint.deleted",
                        target=e.id,
                        source=request.remote,
                        detail={"url": e.url, "cancelled": cancelled},
                    ),
                )
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        return web.Response(status=204)

    async def rotate(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        body: Rotation = await body_of(request, Rotation, "endpoint")
        secret = body.secret if body.secret is not None else new_secret()
        problem = secret_problem(secret)
        if problem is not None:
            raise invalid_field("secret", problem)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                e = await self._endpoint(conn, principal, request.match_info["id"])
                if secret == e.secret:
                    raise invalid_field("secret", "the same as the current secret")
                now = self._clock()
                until = now + timedelta(seconds=body.overlap_s)
                e.updated_at = now
                await endpoints_db.rotate(conn, e, secret, until)
                e.previous_secret, e.previous_until, e.secret = e.secret, until, secret
                await record(
                    conn,
                    AuditEntry.by(
                        principal,
                        "endpoint.secret_rotated",
                        target=e.id,
                        source=request.remote,
                        detail={"overlap_s": body.overlap_s},
                    ),
                )
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        answer = endpoint_json(e)
        answer["secret"] = secret
        return self._json(answer)
