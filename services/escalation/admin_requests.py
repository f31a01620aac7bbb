"""Reading an admin request of the escalation APIs (endpoints, policies, maintenance windows) the
same way: the caller's permission, the query parameters the route takes, and the JSON body decoded
strictly, every refusal a problem naming the resource and the field."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from services.common.auth.principal import Permission, Principal
from services.common.http.body import read_body
from services.common.http.middleware import principal_of
from services.common.http.problem import Problem, invalid_query
from services.common.sites.registry import SiteRegistry

MAX_BODY_BYTES = 64 * 1024


def invalid(resource: str, field: str, detail: str) -> Problem:
    """422 naming the field of a `resource` ("endpoint", "policy", "maintenance window")."""
    return Problem(
        422,
        f"Invalid {resource}",
        f"{field}: {detail}",
        slug="invalid-" + resource.replace(" ", "-"),
        errors=[{"field": field, "detail": detail}],
    )


def field_of(message: str) -> str:
    """The field a msgspec validation message names (`$.minSeverity` -> minSeverity)."""
    for marker in ("`$.", "field `"):
        if marker in message:
            return message.split(marker, 1)[1].split("`", 1)[0].split("[", 1)[0]
    return "body"


def permitted(
    request: web.Request, permission: Permission, what: str, params: Collection[str] = ()
) -> Principal:
    """The caller, if its role may `permission` ("manage endpoints" says `what`) and the query
    names only `params`; else 403 or 422."""
    principal = principal_of(request)
    if not principal.may(permission):
        raise Problem(403, "Forbidden", f"role '{principal.role}' may not {what}")
    unknown = sorted(set(request.query) - set(params))
    if unknown:
        known = f"known are {', '.join(sorted(params))}" if params else "this route takes none"
        raise invalid_query(unknown[0], f"unknown parameter; {known}")
    return principal


def decode(data: bytes, kind: type[Any], resource: str) -> Any:
    """`data` as `kind`; an empty body is an empty object."""
    if not data.strip():
        data = b"{}"
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as err:
        raise invalid(resource, field_of(str(err)), str(err)) from None
    except msgspec.DecodeError as err:
        raise Problem(400, "Invalid body", f"not a JSON object: {err}", slug="invalid-body") from None


async def body_of(
    request: web.Request, kind: type[Any], resource: str, *, limit: int = MAX_BODY_BYTES
) -> Any:
    """The request's JSON body as `kind` (at most `limit` bytes, read within 30 s)."""
    return decode(await read_body(request, limit=limit, time_limit_s=30.0), kind, resource)


class AdminApi:
    """What the escalation admin APIs hold: the pool, the site registry in use, the clock."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        sites: Callable[[], SiteRegistry],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool = pool
        self._sites = sites
        self._clock = clock
