"""GET /v1/audit: the audit trail as an admin reviews it.

    GET /v1/audit?since=&actor=&incident=&action=&limit=&cursor=

Every row any part of the hub records (keys created and revoked, tokens issued, alarm actions,
incident reads and changes, photos attached and looked at), newest first, of the caller's
tenant only. An admin limited to some sites sees the rows about those sites only (a row names
its site in `detail.site`); rows about no site (keys, tokens) are for an admin of the whole
tenant. Pages continue from an opaque cursor bound to the filters it was made for (another
query's cursor is 400). Reading the trail is not itself recorded: it changes nothing, and a
trail that grows with every look at it drowns what it is for.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from services.common.auth.principal import Permission, Principal
from services.common.db.pool import TRANSIENT_DB_ERRORS, bounded
from services.common.errors import UnavailableError
from services.common.http.middleware import principal_of
from services.common.http.problem import Problem, invalid_query
from services.common.http.query import parse_time

READ_AUDIT = Permission("audit.read", frozenset({"admin"}), "review the audit trail (`GET /v1/audit`)")

MAX_LIMIT = 500
QUERY_TIMEOUT_S = 5.0
_PARAMS = frozenset({"since", "actor", "incident", "action", "limit", "cursor"})
_LIMIT = re.compile(r"^[0-9]{1,4}\Z", re.ASCII)
_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}\Z")
_ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\Z", re.ASCII)
_MAX_ACTOR = 200


@dataclass(frozen=True, slots=True)
class AuditQuery:
    tenant: str
    sites: frozenset[str] | None  # None: every site, and the rows of no site
    since: datetime | None = None
    actor: str | None = None
    incident: str | None = None
    action: str | None = None
    limit: int = 100

    def digest(self) -> str:
        parts = (
            self.tenant,
            ",".join(sorted(self.sites)) if self.sites is not None else "*",
            self.since.astimezone(UTC).isoformat() if self.since else "",
            self.actor or "",
            self.incident or "",
            self.action or "",
        )
        return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).hexdigest()


def encode_cursor(query: AuditQuery, last_id: int) -> str:
    raw = msgspec.json.encode([query.digest(), last_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_CURSOR = msgspec.json.Decoder(tuple[str, int])


def decode_cursor(query: AuditQuery, cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4))
        digest, last_id = _CURSOR.decode(raw)
    except (UnicodeEncodeError, binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise invalid_query("cursor", "cursor is not one this API returned") from None
    if digest != query.digest():
        raise invalid_query("cursor", "cursor belongs to another query: pass the filters it came with")
    if not 0 < last_id < 2**63:
        raise invalid_query("cursor", "cursor is not one this API returned")
    return last_id


def build_sql(query: AuditQuery, after: int | None) -> tuple[str, list[Any]]:
    params: list[Any] = [query.tenant]

    def bind(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    where = ["tenant = $1"]
    if query.sites is not None:
        where.append(f"detail->>'site' = ANY({bind(sorted(query.sites))}::text[])")
    if query.since is not None:
        where.append(f"at >= {bind(query.since)}")
    if query.actor is not None:
        where.append(f"actor = {bind(query.actor)}")
    if query.incident is not None:
        where.append(f"target = {bind(query.incident)}")
        where.append("action LIKE 'incident.%'")
    if query.action is not None:
        where.append(f"action = {bind(query.action)}")
    if after is not None:
        where.append(f"id < {bind(after)}")
    sql = (
        "SELECT id, at, actor, actor_kind, action, target, reason, source, request_id, detail "
        f"FROM audit_log WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT {bind(query.limit + 1)}"
    )
    return sql, params


def row_json(row: asyncpg.Record) -> dict[str, Any]:
    detail = row["detail"]
    return {
        "id": str(row["id"]),
        "at": row["at"].astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "actor": row["actor"],
        "actorKind": row["actor_kind"],
        "action": row["action"],
        "target": row["target"],
        "reason": row["reason"] or None,
        "source": row["source"],
        "requestId": row["request_id"],
        "detail": msgspec.json.decode(detail) if isinstance(detail, str) else detail,
    }


class AuditApi:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/audit", self.list_entries)

    def _query(self, request: web.Request, principal: Principal) -> AuditQuery:
        unknown = sorted(set(request.query) - _PARAMS)
        if unknown:
            raise invalid_query(unknown[0], f"unknown parameter; known are {', '.join(sorted(_PARAMS))}")
        for name in _PARAMS:
            if len(request.query.getall(name, [])) > 1:
                raise invalid_query(name, "given twice; this parameter takes one value")
        actor = request.query.get("actor")
        if actor is not None and (not actor.strip() or len(actor) > _MAX_ACTOR or "\x00" in actor):
            raise invalid_query("actor", f"expected a person's subject or a key id, 1 to {_MAX_ACTOR} long")
        incident = request.query.get("incident")
        if incident is not None and not _ULID.match(incident):
            raise invalid_query("incident", "expected an incident id (26 characters, a ULID)")
        action = request.query.get("action")
        if action is not None and (len(action) > 100 or not _ACTION.match(action)):
            raise invalid_query("action", "expected a dotted action name, such as incident.read")
        raw_limit = request.query.get("limit", "100")
        if not _LIMIT.match(raw_limit) or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise invalid_query("limit", f"expected a whole number from 1 to {MAX_LIMIT}")
        since = request.query.get("since")
        return AuditQuery(
            tenant=principal.tenant,
            sites=principal.sites,
            since=parse_time("since", since) if since is not None else None,
            actor=actor,
            incident=incident,
            action=action,
            limit=int(raw_limit),
        )

    async def list_entries(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        if not principal.may(READ_AUDIT):
            raise Problem(403, "Forbidden", f"role '{principal.role}' may not read the audit trail")
        query = self._query(request, principal)
        after = decode_cursor(query, request.query["cursor"]) if "cursor" in request.query else None
        sql, params = build_sql(query, after)

        async def run() -> list[asyncpg.Record]:
            async with self._pool.acquire() as conn:
                return list(await conn.fetch(sql, *params))

        try:
            rows = await bounded(QUERY_TIMEOUT_S, run())
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        cursor = None
        if len(rows) > query.limit:
            rows = rows[: query.limit]
            cursor = encode_cursor(query, rows[-1]["id"])
        body = {"items": [row_json(row) for row in rows], "next": cursor}
        return web.Response(body=msgspec.json.encode(body), content_type="application/json")
