"""GET /v1/observations: the history of readings and detections the caller may read."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import msgspec
from aiohttp import web

from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.common.http.middleware import principal_of
from services.common.http.problem import Problem, invalid_query
from services.common.sites.registry import SiteRegistry
from services.common.types import DEVICE_ID_PATTERN, KIND_PATTERN, SLUG_PATTERN
from services.store.permissions import READ_OBSERVATIONS
from services.store.query import MAX_LIMIT, BadCursor, ObservationQuery, decode_cursor, run_query

_PARAMS = frozenset({"site", "device", "kind", "since", "until", "limit", "cursor"})



# An unescaped "+" in a query string arrives as a space. In an RFC 3339 time a space followed by
# the offset's digits can only have been that "+", so it is read as one instead of refused.
_SPACED_OFFSET = re.compile(r"^(?P<moment>.+\d) (?P<offset>\d{2}:\d{2})\Z")
# RFC 3339 `date-time` exactly: seconds and an offset are required, basic forms such as
# 20261122T000000Z (which Python's parser also takes) are not RFC 3339 and are refused.
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})\Z", re.ASCII
)
_LIMIT = re.compile(r"^[0-9]{1,7}\Z", re.ASCII)  # int() would also take Arabic-Indic digits, or " 5_0 "
# What a stored observation's site, device and kind can be: anything else matches nothing, and a
# NUL (which PostgreSQL text cannot hold) must not reach the database.
_FILTERS = {
    "site": (re.compile(SLUG_PATTERN), "a site id: lower-case letters, digits and '-'"),
    "device": (re.compile(DEVICE_ID_PATTERN), "a device id: letters, digits, '_' and '-'"),
    "kind": (re.compile(KIND_PATTERN), "a kind such as gas.h2s: lower-case words joined by '.'"),
}
_TIME_HINT = "expected an RFC 3339 time with an offset, such as 2026-11-22T09:00:00+09:00"


def _time(params: dict[str, str], name: str) -> datetime | None:
    raw = params.get(name)
    if raw is None:
        return None
    raw = _SPACED_OFFSET.sub(r"\g<moment>+\g<offset>", raw)
    if not _RFC3339.match(raw):
        raise invalid_query(name, _TIME_HINT)
    # Python keeps microseconds; RFC 3339 allows more digits, which are cut, not rounded.
    raw = re.sub(r"(\.\d{6})\d+", r"\1", raw)
    try:
        moment = datetime.fromisoformat(raw.replace("z", "Z"))
        # 0001-01-01T00:00:00+23:59 is a valid RFC 3339 text but no instant Python (or the
        # database) can hold in UTC.
        moment.astimezone(UTC)
    except (ValueError, OverflowError) as err:
        raise invalid_query(name, f"not a time that exists; {_TIME_HINT}") from err
    return moment


def _filter(params: dict[str, str], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    pattern, what = _FILTERS[name]
    if len(value) > 63 or not pattern.match(value):
        raise invalid_query(name, f"expected {what} (at most 63 characters)")
    return value


class StoreApi:
    def __init__(self, pool: asyncpg.Pool, registry: Callable[[], SiteRegistry]) -> None:
        self._pool = pool
        self._registry = registry

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/observations", self.list_observations)

    def _query(self, request: web.Request) -> ObservationQuery:
        principal = principal_of(request)
        if not principal.may(READ_OBSERVATIONS):
            raise Problem(403, "Forbidden", f"role '{principal.role}' may not read observations")
        params = dict(request.query)
        unknown = sorted(set(params) - _PARAMS)
        if unknown:
            raise invalid_query(unknown[0], f"unknown parameter; known are {', '.join(sorted(_PARAMS))}")
        registry = self._registry()
        readable = [
            s.id
            for s in registry.sites_of(principal.tenant)
            if principal.sites is None or s.id in principal.sites
        ]
        site = _filter(params, "site")
        if site is not None:
            if site not in readable:
                raise Problem(
                    403,
                    "Forbidden",
                    f"this key may not read site '{site}'",
                    errors=[{"field": "site", "detail": "not readable with this key"}],
                )
            readable = [site]
        raw_limit = params.get("limit", "100")
        if not _LIMIT.match(raw_limit):
            raise invalid_query("limit", f"expected a whole number from 1 to {MAX_LIMIT}, in digits 0-9")
        limit = int(raw_limit)
        if not 1 <= limit <= MAX_LIMIT:
            raise invalid_query("limit", f"must be between 1 and {MAX_LIMIT}")
        after = None
        if "cursor" in params:
            try:
                after = decode_cursor(params["cursor"])
            except BadCursor as err:
                raise invalid_query("cursor", str(err)) from err
        return ObservationQuery(
            sites=readable,
            device=_filter(params, "device"),
            kind=_filter(params, "kind"),
            since=_time(params, "since"),
            until=_time(params, "until"),
            limit=limit,
            after=after,
        )

    async def list_observations(self, request: web.Request) -> web.Response:
        query = self._query(request)
        try:
            items, cursor = await run_query(self._pool, query)
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        body = {"items": items, "next": cursor}
        return web.Response(body=msgspec.json.encode(body), content_type="application/json")
