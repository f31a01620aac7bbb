"""GET /v1/observations: the history of readings and detections the caller may read."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

import asyncpg
import msgspec
from aiohttp import web

from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.common.http.middleware import principal_of
from services.common.http.problem import Problem
from services.common.sites.registry import SiteRegistry
from services.store.query import MAX_LIMIT, BadCursor, ObservationQuery, decode_cursor, run_query

_PARAMS = frozenset({"site", "device", "kind", "since", "until", "limit", "cursor"})


def _bad(field: str, detail: str) -> Problem:
    return Problem(
        400,
        "Invalid query",
        f"{field}: {detail}",
        slug="invalid-query",
        errors=[{"field": field, "detail": detail}],
    )


# An unescaped "+" in a query string arrives as a space. In an RFC 3339 time a space followed by
# the offset's digits can only have been that "+", so it is read as one instead of refused.
_SPACED_OFFSET = re.compile(
    r"^(?P<moment>\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (?P<offset>\d{2}:?\d{2})\Z"
)


def _time(params: dict[str, str], name: str) -> datetime | None:
    raw = params.get(name)
    if raw is None:
        return None
    raw = _SPACED_OFFSET.sub(r"\g<moment>+\g<offset>", raw)
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError as err:
        raise _bad(name, "expected an RFC 3339 time such as 2026-11-22T09:00:00+09:00") from err
    if moment.tzinfo is None:
        raise _bad(name, "the time needs a UTC offset")
    return moment


class StoreApi:
    def __init__(self, pool: asyncpg.Pool, registry: Callable[[], SiteRegistry]) -> None:
        self._pool = pool
        self._registry = registry

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/observations", self.list_observations)

    def _query(self, request: web.Request) -> ObservationQuery:
        principal = principal_of(request)
        if not principal.may_read_observations:
            raise Problem(403, "Forbidden", f"role '{principal.role}' may not read observations")
        params = dict(request.query)
        unknown = sorted(set(params) - _PARAMS)
        if unknown:
            raise _bad(unknown[0], f"unknown parameter; known are {', '.join(sorted(_PARAMS))}")
        registry = self._registry()
        readable = [
            s.id
            for s in registry.sites_of(principal.tenant)
            if principal.sites is None or s.id in principal.sites
        ]
        site = params.get("site")
        if site is not None:
            if site not in readable:
                raise Problem(
                    403,
                    "Forbidden",
                    f"this key may not read site '{site}'",
                    errors=[{"field": "site", "detail": "not readable with this key"}],
                )
            readable = [site]
        try:
            limit = int(params.get("limit", "100"))
        except ValueError as err:
            raise _bad("limit", "expected a whole number") from err
        if not 1 <= limit <= MAX_LIMIT:
            raise _bad("limit", f"must be between 1 and {MAX_LIMIT}")
        after = None
        if "cursor" in params:
            try:
                after = decode_cursor(params["cursor"])
            except BadCursor as err:
                raise _bad("cursor", str(err)) from err
        return ObservationQuery(
            sites=readable,
            device=params.get("device"),
            kind=params.get("kind"),
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
