"""The incident read API: the list and one incident with its members, actions and timeline.

    GET /v1/incidents?status=&severity=&type=&site=&since=&near=LAT,LON&radius_m=&limit=&cursor=
    GET /v1/incidents/{id}

Everything is the caller's tenant's and sites' only: an incident the caller may not read answers
exactly as one that does not exist (404). Each read of one incident's details is in the audit
trail (who looked at what, when): a review may ask who knew.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from datetime import datetime

import asyncpg
import msgspec
from aiohttp import web

from services.common.audit import AuditEntry, record
from services.common.auth.principal import Principal
from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.common.http.middleware import principal_of
from services.common.http.problem import Problem, invalid_query
from services.common.http.query import parse_time
from services.common.sites.registry import SiteRegistry
from services.common.types import SLUG_PATTERN
from services.incidents import repository
from services.incidents.domain.incident import Incident
from services.incidents.domain.model import IncidentType, Severity, Status
from services.incidents.permissions import READ_INCIDENTS
from services.incidents.read_json import detail_json, etag, incident_json, language
from services.incidents.read_query import (
    MAX_LIMIT,
    BadCursor,
    IncidentQuery,
    decode_cursor,
    list_incidents,
    timeline_of,
)

_LIST_PARAMS = frozenset(
    {"status", "severity", "type", "site", "since", "near", "radius_m", "limit", "cursor"}
)
_SLUG = re.compile(SLUG_PATTERN)
# A ULID: what every incident id is.
INCIDENT_ID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}\Z")
_LIMIT = re.compile(r"^[0-9]{1,7}\Z", re.ASCII)
_NUMBER = re.compile(r"^-?[0-9]{1,3}(\.[0-9]{1,12})?\Z", re.ASCII)
_RADIUS = re.compile(r"^[0-9]{1,8}(\.[0-9]{1,6})?\Z", re.ASCII)
_INCIDENT = msgspec.json.Decoder(Incident)


def _json(body: object, *, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), content_type="application/json", headers=headers)


def _enum(request: web.Request, name: str, known: Sequence[str]) -> list[str] | None:
    if name not in request.query:
        return None
    asked = sorted(set(request.query.getall(name)))
    unknown = [a for a in asked if a not in known]
    if unknown:
        raise invalid_query(name, f"unknown {name} '{unknown[0]}'; known are {', '.join(known)}")
    return asked


def parse_since(raw: str) -> datetime:
    return parse_time("since", raw)


def parse_near(raw: str) -> tuple[float, float]:
    hint = "expected LAT,LON in decimal degrees, such as 35.4772,129.3554"
    lat_text, sep, lon_text = raw.partition(",")
    if not sep or not _NUMBER.match(lat_text.strip()) or not _NUMBER.match(lon_text.strip()):
        raise invalid_query("near", hint)
    lat, lon = float(lat_text), float(lon_text)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise invalid_query("near", f"latitude within ±90 and longitude within ±180; {hint}")
    return lat, lon


class IncidentReadApi:
    def __init__(self, pool: asyncpg.Pool, sites: Callable[[], SiteRegistry]) -> None:
        self._pool = pool
        self._sites = sites

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/incidents", self.list_incidents)
        app.router.add_get("/v1/incidents/{id}", self.incident)

    def _principal(self, request: web.Request) -> Principal:
        principal = principal_of(request)
        if not principal.may(READ_INCIDENTS):
            raise Problem(403, "Forbidden", f"role '{principal.role}' may not read incidents")
        return principal

    def readable(self, principal: Principal) -> list[str]:
        return [
            s.id
            for s in self._sites().sites_of(principal.tenant)
            if principal.sites is None or s.id in principal.sites
        ]

    def site_timezone(self, site: str) -> str | None:
        registered = self._sites().site(site)
        return registered.timezone if registered is not None else None

    def _language(self, request: web.Request, site: str) -> str:
        return language(request.headers.get("Accept-Language"), self.site_timezone(site))

    async def list_incidents(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        unknown = sorted(set(request.query) - _LIST_PARAMS)
        if unknown:
            raise invalid_query(unknown[0], f"unknown parameter; known are {', '.join(sorted(_LIST_PARAMS))}")
        readable = self.readable(principal)
        sites = readable
        if "site" in request.query:
            site = request.query["site"]
            if len(site) > 63 or not _SLUG.match(site):
                raise invalid_query("site", "expected a site id: lower-case letters, digits and '-'")
            if site not in readable:
                raise Problem(
                    403,
                    "Forbidden",
                    f"this key may not read site '{site}'",
                    errors=[{"field": "site", "detail": "not readable with this key"}],
                )
            sites = [site]
        near = parse_near(request.query["near"]) if "near" in request.query else None
        radius = None
        if "radius_m" in request.query:
            raw = request.query["radius_m"]
            if near is None:
                raise invalid_query("radius_m", "only with `near`: the distance from that point")
            if not _RADIUS.match(raw) or not math.isfinite(float(raw)):
                raise invalid_query("radius_m", "expected metres as a non-negative number, such as 500")
            radius = float(raw)
        raw_limit = request.query.get("limit", "100")
        if not _LIMIT.match(raw_limit) or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise invalid_query("limit", f"expected a whole number from 1 to {MAX_LIMIT}, in digits 0-9")
        query = IncidentQuery(
            tenant=principal.tenant,
            sites=sites,
            statuses=_enum(request, "status", [s.value for s in Status]),
            severities=_enum(request, "severity", [s.value for s in Severity]),
            types=_enum(request, "type", [t.value for t in IncidentType]),
            since=parse_since(request.query["since"]) if "since" in request.query else None,
            near=near,
            radius_m=radius,
            limit=int(raw_limit),
        )
        after = None
        if "cursor" in request.query:
            try:
                after = decode_cursor(query, request.query["cursor"])
            except BadCursor as err:
                raise invalid_query("cursor", str(err)) from err
        try:
            rows, cursor = await list_incidents(self._pool, query, after)
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        items = []
        for row in rows:
            incident = _INCIDENT.decode(row["body"])
            lang = self._language(request, incident.site)
            items.append(incident_json(incident, lang, row["distance_m"]))
        return _json({"items": items, "next": cursor})

    async def incident(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        if request.query:
            name = sorted(request.query)[0]
            raise invalid_query(name, "unknown parameter; this route takes none")
        incident_id = request.match_info["id"]
        readable = self.readable(principal)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                incident = None
                if INCIDENT_ID.match(incident_id):
                    incident = await repository.load_incident(conn, principal.tenant, incident_id)
                if incident is None or incident.site not in readable:
                    raise not_found(incident_id)
                timeline = await timeline_of(conn, principal.tenant, incident_id)
                photos = await repository.attachments_of(conn, principal.tenant, incident_id)
                await record(
                    conn,
                    AuditEntry.by(
                        principal,
                        "incident.read",
                        target=incident_id,
                        source=request.remote,
                        detail={"site": incident.site},
                    ),
                )
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        body = detail_json(incident, self._language(request, incident.site), timeline, photos)
        return _json(body, headers={"ETag": etag(incident.version)})


def not_found(incident_id: str) -> Problem:
    # The same answer for an incident that does not exist and one the caller may not see.
    shown = incident_id if len(incident_id) <= 64 else incident_id[:64] + "..."
    return Problem(404, "Not found", f"no incident '{shown}' that this key may read")
