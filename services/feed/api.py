"""The feed's HTTP API, for a tenant's administrators:

    PUT /v1/sharing-policies/{site}    set the site's policy (a new version, audited)
    GET /v1/sharing-policies/{site}    the policy in force and its version
    GET /v1/feed/exports?site=&since=&after=&limit=    what left, with the policy version that let it

A site of another tenant, or outside the caller's sites, answers as one that does not exist (404).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from services.common.audit import AuditEntry, record
from services.common.auth.principal import Permission, Principal
from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.common.http.body import read_body
from services.common.http.middleware import principal_of
from services.common.http.problem import Problem, invalid_query
from services.common.outbox import Outbox
from services.common.sites.registry import SiteRegistry
from services.feed import repository
from services.feed.domain.policy import SharingPolicy, tightens
from services.feed.domain.projection import rfc3339
from services.feed.permissions import READ_EXPORTS, SET_SHARING
from services.incidents.read_api import parse_since

MAX_BODY_BYTES = 16 * 1024
BODY_TIME_S = 10.0
MAX_LIMIT = 1000
_POLICY = msgspec.json.Decoder(SharingPolicy)
_COUNT = re.compile(r"^[0-9]{1,12}\Z", re.ASCII)
_EXPORT_PARAMS = frozenset({"site", "since", "after", "limit"})


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=msgspec.json.encode(body), content_type="application/json")


def invalid_policy(field: str, detail: str) -> Problem:
    return Problem(
        422,
        "Invalid policy",
        f"{field}: {detail}",
        slug="invalid-policy",
        errors=[{"field": field, "detail": detail}],
    )


def _field_of(message: str) -> str:
    """The field msgspec names in a validation error: `$.fields.incident[1]` -> fields.incident[1],
    "unknown field `colour`" -> colour."""
    if "- at `$." in message:
        path = message.rsplit("- at `$.", 1)[1].rstrip("`")
        unknown = re.search(r"unknown field `([^`]+)`", message)
        return f"{path}.{unknown.group(1)}" if unknown else path
    unknown = re.search(r"unknown field `([^`]+)`", message)
    if unknown:
        return unknown.group(1)
    missing = re.search(r"missing required field `([^`]+)`", message)
    return missing.group(1) if missing else "body"


def policy_json(site: str, version: repository.PolicyVersion | None) -> dict[str, Any]:
    if version is None:
        return {"site": site, "version": 0, **msgspec.to_builtins(SharingPolicy()), "source": None}
    return {
        "site": site,
        "version": version.version,
        **msgspec.to_builtins(version.policy),
        "source": version.source,
        "setBy": version.set_by,
        "setAt": rfc3339(version.set_at),
    }


class FeedApi:
    def __init__(self, pool: asyncpg.Pool, outbox: Outbox, sites: Callable[[], SiteRegistry]) -> None:
        self._pool = pool
        self._outbox = outbox
        self._sites = sites

    def add_routes(self, app: web.Application) -> None:
        app.router.add_put("/v1/sharing-policies/{site}", self.put_policy)
        app.router.add_get("/v1/sharing-policies/{site}", self.get_policy)
        app.router.add_get("/v1/feed/exports", self.list_exports)

    def _allowed(self, request: web.Request, permission: Permission, what: str) -> Principal:
        principal = principal_of(request)
        if not principal.may(permission):
            raise Problem(403, "Forbidden", f"role '{principal.role}' may not {what}")
        return principal

    def _readable(self, principal: Principal) -> list[str]:
        return [
            s.id
            for s in self._sites().sites_of(principal.tenant)
            if principal.sites is None or s.id in principal.sites
        ]

    def _site(self, request: web.Request, principal: Principal) -> str:
        site = request.match_info["site"]
        if site not in self._readable(principal):
            shown = site if len(site) <= 64 else site[:64] + "..."
            raise Problem(404, "Not found", f"no site '{shown}' that this key may manage")
        return site

    async def put_policy(self, request: web.Request) -> web.Response:
        principal = self._allowed(request, SET_SHARING, "set sharing policies")
        if request.query:
            raise invalid_query(sorted(request.query)[0], "unknown parameter; this route takes none")
        site = self._site(request, principal)
        data = await read_body(request, limit=MAX_BODY_BYTES, time_limit_s=BODY_TIME_S)
        try:
            policy = _POLICY.decode(data)
        except msgspec.ValidationError as err:
            raise invalid_policy(_field_of(str(err)), str(err)) from None
        except msgspec.DecodeError as err:
            raise Problem(400, "Invalid body", f"not a JSON object: {err}", slug="invalid-body") from None
        try:
            async with self._outbox.unit_of_work() as uow:
                before = await repository.latest_policy(uow.connection, principal.tenant, site)
                written = await repository.set_policy(
                    uow.connection, principal.tenant, site, policy, source="api", set_by=principal.actor
                )
                await record(
                    uow.connection,
                    AuditEntry.by(
                        principal,
                        "sharing_policy.set",
                        target=site,
                        source=request.remote,
                        request_id=request.headers.get("X-Request-Id"),
                        detail={
                            "version": written.version,
                            "level": str(policy.level),
                            "previous_version": before.version if before else 0,
                            "tightens": tightens(before.policy if before else SharingPolicy(), policy),
                            "policy": msgspec.to_builtins(policy),
                        },
                    ),
                )
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        return _json(policy_json(site, written))

    async def get_policy(self, request: web.Request) -> web.Response:
        principal = self._allowed(request, SET_SHARING, "read sharing policies")
        if request.query:
            raise invalid_query(sorted(request.query)[0], "unknown parameter; this route takes none")
        site = self._site(request, principal)
        try:
            async with self._pool.acquire() as conn:
                latest = await repository.latest_policy(conn, principal.tenant, site)
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        return _json(policy_json(site, latest))

    async def list_exports(self, request: web.Request) -> web.Response:
        principal = self._allowed(request, READ_EXPORTS, "list the feed's exports")
        for name in request.query:
            if name not in _EXPORT_PARAMS:
                raise invalid_query(name, f"unknown parameter; known are {', '.join(sorted(_EXPORT_PARAMS))}")
        readable = self._readable(principal)
        sites = readable
        if "site" in request.query:
            site = request.query["site"]
            if site not in readable:
                raise invalid_query("site", f"no site '{site[:64]}' that this key may read")
            sites = [site]
        since = (
            parse_since(request.query["since"])
            if "since" in request.query
            else datetime(1970, 1, 1, tzinfo=UTC)
        )
        after = _count(request, "after", 0)
        limit = _count(request, "limit", 100)
        if not 1 <= limit <= MAX_LIMIT:
            raise invalid_query("limit", f"between 1 and {MAX_LIMIT}")
        try:
            rows = await repository.list_exports(
                self._pool, principal.tenant, sites, since, after=after, limit=limit
            )
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        exports = [
            {
                "seq": r["seq"],
                "eventId": r["event_id"],
                "site": r["site"],
                "kind": r["kind"],
                "objectId": r["object_id"],
                "policyVersion": r["policy_version"],
                "level": r["level"],
                "fields": list(r["fields"]),
                "eventTime": rfc3339(r["event_time"]),
                "exportedAt": rfc3339(r["exported_at"]),
            }
            for r in rows
        ]
        # The next page: the same query with `after` = the last row's seq.
        following = exports[-1]["seq"] if len(exports) == limit else None
        return _json({"exports": exports, "after": following})


def _count(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _COUNT.match(raw):
        raise invalid_query(name, "a whole number")
    return int(raw)
