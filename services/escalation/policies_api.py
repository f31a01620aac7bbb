"""The escalation policies API (role admin).

    POST   /v1/policies        create
    GET    /v1/policies        list, in the order they are tried
    GET    /v1/policies/{id}   one
    PUT    /v1/policies/{id}   replace; incidents already climbing follow it from their next step
    DELETE /v1/policies/{id}   delete; incidents climbing it stop at their next step

A policy with a loop (a step whose `next` is not a later step), a step naming no endpoint (or one
that is not the tenant's), or a negative wait is 422 naming the field. Audited.
"""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
import msgspec
from aiohttp import web

from services.common.audit import AuditEntry, record
from services.common.auth.principal import Principal
from services.common.contracts.ids import new_id
from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.common.http.problem import Problem
from services.escalation.adapters import endpoints_db, policies_db
from services.escalation.adapters.policies_db import PolicyRow, StepJson, steps_json, steps_of
from services.escalation.admin_requests import AdminApi, body_of, permitted
from services.escalation.admin_requests import invalid as invalid_of
from services.escalation.api_bodies import IncidentTypeName, Name, Severity, SiteId
from services.escalation.domain.policy import InvalidPolicy, Policy, check_steps
from services.escalation.endpoints_api import ENDPOINT_ID
from services.escalation.permissions import MANAGE_POLICIES
from services.incidents.read_json import rfc3339


class PolicyBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True, rename="camel"):
    steps: Annotated[list[StepJson], msgspec.Meta(max_length=50)]
    name: Name = ""
    position: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0
    sites: Annotated[list[SiteId], msgspec.Meta(max_length=1000)] | None = None
    types: Annotated[list[IncidentTypeName], msgspec.Meta(max_length=20)] | None = None
    min_severity: Severity = "Unknown"
    ack_deadlines_s: dict[Severity, Annotated[float, msgspec.Meta(ge=0)]] = msgspec.field(
        default_factory=dict
    )


def invalid(field: str, detail: str) -> Problem:
    return invalid_of("policy", field, detail)


def policy_json(row: PolicyRow) -> dict[str, Any]:
    p = row.policy
    return {
        "id": p.id,
        "name": row.name,
        "position": p.position,
        "sites": sorted(p.sites) if p.sites is not None else None,
        "types": sorted(p.types) if p.types is not None else None,
        "minSeverity": p.min_severity,
        "ackDeadlinesS": dict(p.ack_deadlines_s),
        "steps": steps_json(p.steps),
        "createdAt": rfc3339(row.created_at),
        "updatedAt": rfc3339(row.updated_at),
    }


class PoliciesApi(AdminApi):
    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/policies", self.create)
        app.router.add_get("/v1/policies", self.list_policies)
        app.router.add_get("/v1/policies/{id}", self.one)
        app.router.add_put("/v1/policies/{id}", self.replace)
        app.router.add_delete("/v1/policies/{id}", self.delete)

    def _principal(self, request: web.Request) -> Principal:
        principal = permitted(request, MANAGE_POLICIES, "manage escalation policies")
        if principal.sites is not None:
            raise Problem(403, "Forbidden", "a key limited to sites may not manage the tenant's policies")
        return principal

    async def _body(self, request: web.Request) -> PolicyBody:
        body: PolicyBody = await body_of(request, PolicyBody, "policy")
        return body

    async def _policy(
        self, conn: asyncpg.Connection, principal: Principal, body: PolicyBody, policy_id: str
    ) -> Policy:
        own = {s.id for s in self._sites().sites_of(principal.tenant)}
        if body.sites is not None:
            unknown = [s for s in body.sites if s not in own]
            if unknown or not body.sites:
                raise invalid(
                    "sites", f"'{unknown[0][:64]}' is not a site of the tenant" if unknown else "empty"
                )
        steps = steps_of(body.steps)
        endpoints = {e.id for e in await endpoints_db.of_tenant(conn, principal.tenant)}
        try:
            check_steps(steps, endpoints)
        except InvalidPolicy as err:
            raise invalid(err.field, err.detail) from None
        return Policy(
            id=policy_id,
            tenant=principal.tenant,
            steps=steps,
            sites=frozenset(body.sites) if body.sites is not None else None,
            types=frozenset(body.types) if body.types is not None else None,
            min_severity=body.min_severity,
            ack_deadlines_s={str(k): v for k, v in body.ack_deadlines_s.items()},
            position=body.position,
        )

    @staticmethod
    def _json(body: object, status: int = 200) -> web.Response:
        return web.Response(status=status, body=msgspec.json.encode(body), content_type="application/json")

    async def _audit(
        self,
        conn: asyncpg.Connection,
        principal: Principal,
        request: web.Request,
        action: str,
        policy_id: str,
    ) -> None:
        await record(conn, AuditEntry.by(principal, action, target=policy_id, source=request.remote))

    async def create(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        body = await self._body(request)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                policy = await self._policy(conn, principal, body, new_id())
                now = self._clock()
                row = PolicyRow(policy, body.name, now, now)
                await policies_db.save(conn, row)
                await self._audit(conn, principal, request, "policy.created", policy.id)
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        return self._json(policy_json(row), 201)

    async def list_policies(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        try:
            rows = await policies_db.of_tenant(self._pool, principal.tenant)
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        return self._json({"items": [policy_json(r) for r in rows]})

    async def _existing(self, conn: asyncpg.Connection, principal: Principal, policy_id: str) -> PolicyRow:
        found = None
        if ENDPOINT_ID.match(policy_id):
            found = await policies_db.load(conn, principal.tenant, policy_id, lock=True)
        if found is None:
            raise Problem(404, "Not found", f"no policy '{policy_id[:64]}' that this key may manage")
        return found

    async def one(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await self._existing(conn, principal, request.match_info["id"])
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        return self._json(policy_json(row))

    async def replace(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        body = await self._body(request)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                old = await self._existing(conn, principal, request.match_info["id"])
                policy = await self._policy(conn, principal, body, old.policy.id)
                row = PolicyRow(policy, body.name, old.created_at, self._clock())
                await policies_db.save(conn, row)
                await self._audit(conn, principal, request, "policy.updated", policy.id)
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        return self._json(policy_json(row))

    async def delete(self, request: web.Request) -> web.Response:
        principal = self._principal(request)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                old = await self._existing(conn, principal, request.match_info["id"])
                await policies_db.delete(conn, principal.tenant, old.policy.id)
                await self._audit(conn, principal, request, "policy.deleted", old.policy.id)
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        return web.Response(status=204)
