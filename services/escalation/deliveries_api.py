"""The deliveries API (role admin): what was sent where, and sending a dead delivery again.

    GET  /v1/deliveries?endpoint=&incident=&status=&limit=&cursor=
    POST /v1/deliveries/{id}/redeliver     a dead (or cancelled) delivery, due at once, its
                                           attempts counted afresh; the same webhook-id

Newest first. The caller's tenant only; a key limited to sites sees their deliveries only.
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
from services.common.auth.principal import Principal
from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.common.http.middleware import principal_of
from services.common.http.problem import Problem, invalid_query
from services.escalation.adapters.deliveries_db import NOTIFY_CHANNEL
from services.escalation.permissions import MANAGE_DELIVERIES
from services.incidents.read_json import rfc3339

STATUSES = ("pending", "sending", "delivered", "dead", "cancelled", "muted")
_PARAMS = frozenset({"endpoint", "incident", "status", "limit", "cursor"})
_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}\Z")
_DELIVERY_ID = re.compile(r"^msg_[0-9A-HJKMNP-TV-Z]{26}\Z")
_DIGITS = re.compile(r"^[0-9]{1,18}\Z", re.ASCII)
MAX_LIMIT = 500

_COLUMNS = """
seq, id, endpoint_id, incident_id, site, change, event_type, status, attempts, due_at, created_at,
delivered_at, last_status, last_error
"""


def delivery_json(row: asyncpg.Record) -> dict[str, Any]:
    waiting = row["status"] == "pending"
    return {
        "id": row["id"],
        "endpoint": row["endpoint_id"],
        "incident": row["incident_id"] or None,  # none for a maintenance reminder
        "site": row["site"],
        "change": row["change"],
        "type": row["event_type"],
        "status": row["status"],
        "attempts": row["attempts"],
        "nextAttemptAt": rfc3339(row["due_at"]) if waiting else None,
        "createdAt": rfc3339(row["created_at"]),
        "deliveredAt": rfc3339(row["delivered_at"]),
        "lastStatus": row["last_status"],
        "lastError": row["last_error"] or None,
    }


class DeliveriesApi:
    def __init__(
        self, pool: asyncpg.Pool, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._pool = pool
        self._clock = clock

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/deliveries", self.list_deliveries)
        app.router.add_post("/v1/deliveries/{id}/redeliver", self.redeliver)

    @staticmethod
    def _principal(request: web.Request) -> Principal:
        principal = principal_of(request)
        if not principal.may(MANAGE_DELIVERIES):
            raise Problem(403, "Forbidden", f"role '{principal.role}' may not read deliveries")
        return principal

    async def list_deliveries(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        query = request.query
        unknown = sorted(set(query) - _PARAMS)
        if unknown:
            raise invalid_query(unknown[0], f"unknown parameter; known are {', '.join(sorted(_PARAMS))}")
        where = ["tenant = $1"]
        args: list[Any] = [principal.tenant]
        for name, column in (("endpoint", "endpoint_id"), ("incident", "incident_id")):
            if name in query:
                if not _ULID.match(query[name]):
                    raise invalid_query(name, f"expected an {name} id (a ULID)")
                args.append(query[name])
                where.append(f"{column} = ${len(args)}")
        if "status" in query:
            asked = sorted(set(query.getall("status")))
            wrong = [s for s in asked if s not in STATUSES]
            if wrong:
                raise invalid_query(
                    "status", f"unknown status '{wrong[0][:32]}'; known are {', '.join(STATUSES)}"
                )
            args.append(asked)
            where.append(f"status = ANY(${len(args)}::text[])")
        if principal.sites is not None:
            args.append(sorted(principal.sites))
            where.append(f"site = ANY(${len(args)}::text[])")
        raw_limit = query.get("limit", "100")
        if not _DIGITS.match(raw_limit) or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise invalid_query("limit", f"expected a whole number from 1 to {MAX_LIMIT}")
        if "cursor" in query:
            if not _DIGITS.match(query["cursor"]):
                raise invalid_query("cursor", "not a cursor this API gave")
            args.append(int(query["cursor"]))
            where.append(f"seq < ${len(args)}")
        args.append(int(raw_limit) + 1)
        sql = (
            f"SELECT {_COLUMNS} FROM escalation_deliveries WHERE {' AND '.join(where)}"
            f" ORDER BY seq DESC LIMIT ${len(args)}"
        )
        try:
            rows = await self._pool.fetch(sql, *args)
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        more = len(rows) > int(raw_limit)
        rows = rows[: int(raw_limit)]
        body = {
            "items": [delivery_json(r) for r in rows],
            "next": str(rows[-1]["seq"]) if more and rows else None,
        }
        return web.Response(body=msgspec.json.encode(body), content_type="application/json")

    async def redeliver(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        if request.query:
            raise invalid_query(sorted(request.query)[0], "unknown parameter; this route takes none")
        delivery_id = request.match_info["id"]
        shown = delivery_id[:64]
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                row = None
                if _DELIVERY_ID.match(delivery_id):
                    row = await conn.fetchrow(
                        f"SELECT {_COLUMNS} FROM escalation_deliveries"
                        " WHERE tenant = $1 AND id = $2 FOR UPDATE",
                        principal.tenant,
                        delivery_id,
                    )
                if row is None or (principal.sites is not None and row["site"] not in principal.sites):
                    raise Problem(404, "Not found", f"no delivery '{shown}' that this key may read")
                if row["status"] not in ("dead", "cancelled"):
                    raise Problem(
                        409,
                        "Conflict",
                        f"the delivery is {row['status']}: only a dead or cancelled one is redelivered",
                        slug="delivery-status-conflict",
                        deliveryStatus=row["status"],
                    )
                endpoint = await conn.fetchrow(
                    "SELECT enabled, deleted_at FROM escalation_endpoints WHERE tenant = $1 AND id = $2",
                    principal.tenant,
                    row["endpoint_id"],
                )
                if endpoint is None or endpoint["deleted_at"] is not None:
                    raise Problem(409, "Conflict", "its endpoint was deleted", slug="endpoint-deleted")
                if not endpoint["enabled"]:
                    raise Problem(
                        409, "Conflict", "its endpoint is disabled: enable it first", slug="endpoint-disabled"
                    )
                now = self._clock()
                row = await conn.fetchrow(
                    f"""
                    UPDATE escalation_deliveries SET status = 'pending', attempts = 0, due_at = $3,
                        claim = NULL, delivered_at = NULL
                    WHERE tenant = $1 AND id = $2
                    RETURNING {_COLUMNS}
                    """,
                    principal.tenant,
                    delivery_id,
                    now,
                )
                await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
                await record(
                    conn,
                    AuditEntry.by(
                        principal,
                        "delivery.redelivered",
                        target=delivery_id,
                        source=request.remote,
                        detail={"endpoint": row["endpoint_id"], "incident": row["incident_id"]},
                    ),
                )
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        return web.Response(body=msgspec.json.encode(delivery_json(row)), content_type="application/json")
