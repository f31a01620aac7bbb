"""The alarm read API: the alarm list, one alarm with its transitions, and the alarm KPIs.

    GET /v1/alarms?site=&state=&priority=&cursor=&limit=
    GET /v1/alarms/kpis?site=&from=&to=
    GET /v1/alarms/{id}?site=&cursor=&limit=

Everything is the caller's tenant's and sites' only. An alarm the caller may not read answers
exactly as one that does not exist (404), so a key learns nothing of other tenants. Each alarm
carries its rule's rationale from the rules in use (the master alarm database: cause,
consequence, operator action, time to respond), so a screen needs no second lookup.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import msgspec
from aiohttp import web

from services.alarms.domain.kpis import compute
from services.alarms.domain.model import AlarmState, Priority
from services.alarms.domain.rules import RuleSet
from services.alarms.kpi_query import load_kpi_window
from services.alarms.permissions import READ_ALARMS
from services.alarms.read_json import alarm_json, kpis_json, transition_json
from services.alarms.read_query import (
    MAX_LIMIT,
    QUERY_TIMEOUT_S,
    AlarmListQuery,
    BadCursor,
    TransitionPage,
    decode_list_cursor,
    decode_transition_cursor,
    find_alarm,
    list_alarms,
    transitions_of,
)
from services.common.auth.principal import Principal
from services.common.db.pool import TRANSIENT_DB_ERRORS, bounded
from services.common.errors import UnavailableError
from services.common.http.middleware import principal_of
from services.common.http.problem import Problem, invalid_query
from services.common.sites.registry import SiteRegistry
from services.common.types import DEVICE_ID_PATTERN, SLUG_PATTERN

_LIST_PARAMS = frozenset({"site", "state", "priority", "cursor", "limit"})
_DETAIL_PARAMS = frozenset({"site", "cursor", "limit"})
_KPI_PARAMS = frozenset({"site", "from", "to"})
ACTIVE = "active"  # state=active: every state but NORM
_STATES = frozenset(s.value for s in AlarmState)
_PRIORITIES = frozenset(p.value for p in Priority)
DEFAULT_TRANSITIONS = 50
# The KPIs of a longer window are a report to run offline, not a request to hold a pool connection.
MAX_KPI_WINDOW = timedelta(days=366)

_SLUG = re.compile(SLUG_PATTERN)
# '<device>--<rule>': device ids and rule slugs, so an id of the device-id alphabet.
_ALARM_ID = re.compile(DEVICE_ID_PATTERN)
_LIMIT = re.compile(r"^[0-9]{1,7}\Z", re.ASCII)
# RFC 3339 `date-time` exactly (seconds and offset required), as the observation API reads it;
# an unescaped "+" of the offset arrives as a space and is read back as one.
_SPACED_OFFSET = re.compile(r"^(?P<moment>.+\d) (?P<offset>\d{2}:\d{2})\Z")
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})\Z", re.ASCII
)
_TIME_HINT = "expected an RFC 3339 time with an offset, such as 2026-11-22T09:00:00+09:00"


def _json(body: dict[str, Any]) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), content_type="application/json")


def _unknown_params(request: web.Request, known: frozenset[str]) -> None:
    unknown = sorted(set(request.query) - known)
    if unknown:
        raise invalid_query(unknown[0], f"unknown parameter; known are {', '.join(sorted(known))}")


def _limit(request: web.Request, default: int) -> int:
    raw = request.query.get("limit", str(default))
    if not _LIMIT.match(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise invalid_query("limit", f"expected a whole number from 1 to {MAX_LIMIT}, in digits 0-9")
    return int(raw)


def _time(request: web.Request, name: str) -> datetime:
    raw = request.query.get(name)
    if raw is None:
        raise invalid_query(name, f"required; {_TIME_HINT}")
    raw = _SPACED_OFFSET.sub(r"\g<moment>+\g<offset>", raw)
    if not _RFC3339.match(raw):
        raise invalid_query(name, _TIME_HINT)
    raw = re.sub(r"(\.\d{6})\d+", r"\1", raw)  # Python keeps microseconds: cut, not rounded
    try:
        moment = datetime.fromisoformat(raw.replace("z", "Z"))
        moment.astimezone(UTC)  # a valid text may still have no UTC instant (year 1, +23:59)
    except (ValueError, OverflowError) as err:
        raise invalid_query(name, f"not a time that exists; {_TIME_HINT}") from err
    return moment


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # The site files are validated; a zone this Python's tz database lacks still has days.
        return UTC


class AlarmReadApi:
    def __init__(
        self, pool: asyncpg.Pool, sites: Callable[[], SiteRegistry], rules: Callable[[], RuleSet]
    ) -> None:
        self._pool = pool
        self._sites = sites  # functions: a reload swaps the registry and the rules
        self._rules = rules

    def add_routes(self, app: web.Application) -> None:
        # `kpis` before `{id}`: an alarm id always holds "--", so no alarm is shadowed.
        app.router.add_get("/v1/alarms", self.list_alarms)
        app.router.add_get("/v1/alarms/kpis", self.kpis)
        app.router.add_get("/v1/alarms/{id}", self.alarm)

    # ------------------------------------------------------------ who may read what

    def _principal(self, request: web.Request) -> Principal:
        principal = principal_of(request)
        if not principal.may(READ_ALARMS):
            raise Problem(403, "Forbidden", f"role '{principal.role}' may not read alarms")
        return principal

    def _readable(self, principal: Principal) -> list[str]:
        return [
            s.id
            for s in self._sites().sites_of(principal.tenant)
            if principal.sites is None or s.id in principal.sites
        ]

    def _required_site(self, request: web.Request, readable: Sequence[str]) -> str:
        site = self._site(request, readable)
        if site is None:
            raise invalid_query("site", "required: the figures are per site")
        return site

    def _site(self, request: web.Request, readable: Sequence[str]) -> str | None:
        site = request.query.get("site")
        if site is None:
            return None
        if len(site) > 63 or not _SLUG.match(site):
            raise invalid_query("site", "expected a site id: lower-case letters, digits and '-'")
        if site not in readable:
            # The same answer for a site that does not exist and one of another tenant.
            raise Problem(
                403,
                "Forbidden",
                f"this key may not read site '{site}'",
                errors=[{"field": "site", "detail": "not readable with this key"}],
            )
        return site

    # ------------------------------------------------------------ routes

    async def list_alarms(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        _unknown_params(request, _LIST_PARAMS)
        readable = self._readable(principal)
        site = self._site(request, readable)
        states: list[str] | None = None
        if "state" in request.query:
            asked = request.query.getall("state")
            unknown = [s for s in asked if s != ACTIVE and s not in _STATES]
            if unknown:
                known = ", ".join([ACTIVE, *(s.value for s in AlarmState)])
                raise invalid_query("state", f"unknown state '{unknown[0]}'; known are {known}")
            wanted = set(asked)
            if ACTIVE in wanted:
                wanted = (wanted - {ACTIVE}) | (_STATES - {AlarmState.NORM.value})
            states = sorted(wanted)
        priorities: list[str] | None = None
        if "priority" in request.query:
            priorities = sorted(set(request.query.getall("priority")))
            unknown = [p for p in priorities if p not in _PRIORITIES]
            if unknown:
                known = ", ".join(p.value for p in Priority)
                raise invalid_query("priority", f"unknown priority '{unknown[0]}'; known are {known}")
        after = None
        if "cursor" in request.query:
            try:
                after = decode_list_cursor(request.query["cursor"])
            except BadCursor as err:
                raise invalid_query("cursor", str(err)) from err
        query = AlarmListQuery(
            tenant=principal.tenant,
            sites=[site] if site is not None else readable,
            states=states,
            priorities=priorities,
            limit=_limit(request, 100),
            after=after,
        )
        try:
            rows, cursor = await list_alarms(self._pool, query)
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        rules = self._rules()
        return _json({"items": [alarm_json(r, rules) for r in rows], "next": cursor})

    async def alarm(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        _unknown_params(request, _DETAIL_PARAMS)
        alarm_id = request.match_info["id"]
        readable = self._readable(principal)
        site = request.query.get("site")
        sites = [s for s in readable if site is None or s == site]
        limit = _limit(request, DEFAULT_TRANSITIONS)
        after = None
        if "cursor" in request.query:
            try:
                after = decode_transition_cursor(request.query["cursor"])
            except BadCursor as err:
                raise invalid_query("cursor", str(err)) from err
        found = []
        if len(alarm_id) <= 200 and _ALARM_ID.match(alarm_id) and sites:
            try:
                found = await find_alarm(self._pool, principal.tenant, sites, alarm_id)
            except TRANSIENT_DB_ERRORS as err:
                raise UnavailableError("PostgreSQL is unreachable") from err
        if not found:
            # Built from the request alone: an alarm of another tenant, of a site outside the
            # key's, and one that does not exist answer alike.
            where = f" at site '{site}'" if site is not None else ""
            raise Problem(404, "Not found", f"no alarm '{alarm_id}'{where} that this key may read")
        if len(found) > 1:
            at_sites = ", ".join(r["site"] for r in found)
            raise invalid_query("site", f"alarm '{alarm_id}' is at several sites ({at_sites}); name one")
        row = found[0]
        page = TransitionPage(principal.tenant, row["site"], alarm_id, limit, after)
        try:
            transitions, cursor = await transitions_of(self._pool, page)
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        return _json(
            {
                "alarm": alarm_json(row, self._rules()),
                "transitions": [transition_json(t) for t in transitions],
                "next": cursor,
            }
        )

    async def kpis(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        _unknown_params(request, _KPI_PARAMS)
        site = self._required_site(request, self._readable(principal))
        start, end = _time(request, "from"), _time(request, "to")
        now = datetime.now(UTC)
        if end <= start:
            raise invalid_query("to", "must be after `from`")
        if start >= now:
            raise invalid_query("from", "must be in the past: there are no figures of the future yet")
        if end - start > MAX_KPI_WINDOW:
            raise invalid_query("to", f"a window is at most {MAX_KPI_WINDOW.days} days long")
        # A window reaching past now is measured up to now: an average over hours that have not
        # happened yet would flatter the rates.
        end = min(end, now)
        registered = self._sites().site(site)
        timezone = registered.timezone if registered is not None else "UTC"
        try:
            window = await bounded(
                QUERY_TIMEOUT_S,
                load_kpi_window(self._pool, principal.tenant, site, start, end, zone=_zone(timezone)),
            )
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        return _json(kpis_json(site, timezone, compute(window)))
