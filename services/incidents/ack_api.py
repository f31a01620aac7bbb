"""GET and POST /v1/ack/{token}: acknowledging an incident by the signed one-time link of a
notification (escalation puts one in each notification of an incident awaiting acknowledgement).

The token (ack_token.py) is the routes' only credential: it names one tenant, site and incident.
GET only shows the incident and a button, and changes nothing: mail scanners and chat previews
fetch links. POST (the button) acknowledges as the API's ack does, in one unit of work: the site
and incident locked, the change decided (domain/lifecycle.py), the incident and its timeline
entry written (actor `link:<endpoint>`), the link's id recorded as used, the audit row written and
the change emitted through the outbox; committed together, so the climb stops once, and a second
use answers 410 naming who used it and when. An incident acknowledged, dispatched or resolved
already is told plainly (200) and consumes nothing.

A forged, expired or otherwise unusable token, or one naming an incident that is not there, is
one answer: 404 "not valid". It tells a guesser nothing. Pages are HTML (a person follows the
link); a refusal is an HTML page to a browser (Accept: text/html) and problem+json to any other.
The token never reaches a log or a problem's `instance`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
from aiohttp import web

from services.common.audit import AuditEntry, record
from services.common.auth.hub_key import hub_key_of
from services.common.contracts.ids import derived_id
from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.common.http.problem import Problem, problem_response
from services.common.logging import get_logger
from services.common.sites.registry import SiteRegistry
from services.incidents import repository
from services.incidents.ack_page import IncidentFacts, page
from services.incidents.ack_token import AckClaims, AckTokenInvalid, read_ack, token_kid
from services.incidents.adapters import ack_links
from services.incidents.domain.incident import Incident
from services.incidents.domain.lifecycle import Action, decide
from services.incidents.domain.model import Status
from services.incidents.domain.timeline import CHANGE_OF_ACTION, Entry
from services.incidents.read_json import incident_json, language, rfc3339
from services.incidents.service import IncidentsService

log = get_logger(__name__)
PATH = "/v1/ack/{token}"
PREFIX = "/v1/ack/"
# What a problem names as its instance: never the token itself.
_INSTANCE = "/v1/ack/{token}"


class _Refused(Exception):
    """An answer other than the page of an acknowledgeable incident, decided in a unit of work."""

    def __init__(self, response: web.Response) -> None:
        self.response = response


class AckLinkApi:
    def __init__(
        self,
        pool: asyncpg.Pool,
        service: IncidentsService,
        sites: Callable[[], SiteRegistry],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool = pool
        self._service = service
        self._sites = sites
        self._clock = clock

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(PATH, self.show)
        app.router.add_post(PATH, self.acknowledge)

    async def show(self, request: web.Request) -> web.Response:
        """The incident and a button; nothing changes."""
        try:
            async with self._pool.acquire() as conn:
                claims = await self._claims(request, conn)
                incident = await repository.load_incident(conn, claims.tenant, claims.incident_id)
                if incident is None or incident.site != claims.site:
                    return _not_valid(request, "no such incident")
                used = await ack_links.used(conn, claims.jti)
                if used is not None:
                    return _used(request, used)
                if incident.status is not Status.OPEN:
                    return await self._already(request, conn, incident)
        except _Refused as refused:
            return refused.response
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err
        return page(
            200,
            "Acknowledge this incident?",
            "Acknowledging stops the escalation: nobody further is paged about it.",
            self._facts(request, incident),
            button=True,
        )

    async def acknowledge(self, request: web.Request) -> web.Response:
        try:
            return await self._acknowledge(request)
        except _Refused as refused:
            return refused.response
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err

    async def _acknowledge(self, request: web.Request) -> web.Response:
        async with self._service.outbox.unit_of_work() as uow:
            conn = uow.connection
            claims = await self._claims(request, conn)
            site = await repository.incident_site(conn, claims.tenant, claims.incident_id)
            if site is None or site != claims.site:
                return _not_valid(request, "no such incident")
            # The site first, as fusion and the API do: the two never deadlock.
            await repository.lock_sites(conn, [(claims.tenant, site)])
            incident = await repository.lock_incident(conn, claims.tenant, claims.incident_id)
            if incident is None:
                return _not_valid(request, "no such incident")
            # Under the incident's lock: a second use waits for the first to commit, then sees it.
            used = await ack_links.used(conn, claims.jti)
            if used is not None:
                return _used(request, used)
            if incident.status is not Status.OPEN:
                return await self._already(request, conn, incident)
            now = self._clock()
            entry = self._ack(incident, claims, now, request)
            await repository.add_entries(conn, [entry])
            await repository.save_incident(conn, incident)
            await ack_links.record_use(conn, claims, used_at=now, source=request.remote)
            self._service.publish(uow, entry, incident)
            await record(
                conn,
                AuditEntry(
                    actor=claims.actor,
                    actor_kind="link",
                    action=f"incident.{entry.change}",
                    tenant=claims.tenant,
                    target=incident.id,
                    source=request.remote,
                    request_id=request.headers.get("X-Request-Id"),
                    detail={
                        "site": site,
                        "status": str(incident.status),
                        "version": incident.version,
                        "endpoint": claims.endpoint_id,
                        "link": claims.jti,
                    },
                ),
            )
        log.info(
            "incident_acknowledged_by_link",
            site=site,
            incident_id=incident.id,
            endpoint_id=claims.endpoint_id,
            actor=claims.actor,
            correlation_id=incident.correlation_id or None,
        )
        return page(
            200,
            "Acknowledged",
            f"You acknowledged the incident as {claims.actor}; its escalation stops.",
            self._facts(request, incident),
        )

    def _ack(self, incident: Incident, claims: AckClaims, now: datetime, request: web.Request) -> Entry:
        """Acknowledge `incident` (its status, assignee, version); the timeline entry saying so."""
        outcome = decide(Action.ACK, incident.status)
        incident.status = outcome.new
        # Acknowledging takes it, unless someone has it already (as the API's ack).
        if not incident.assignee:
            incident.assignee = claims.actor
        entry = Entry(
            id=derived_id(int(now.timestamp() * 1000), incident.id, Action.ACK, str(incident.version)),
            incident_id=incident.id,
            at=now,
            actor=claims.actor,
            change=CHANGE_OF_ACTION[Action.ACK],
            what=f"acknowledged by {claims.actor}",
            status=incident.status,
            cause=request.headers.get("X-Request-Id", ""),
            tenant=incident.tenant,
        )
        incident.version += 1
        incident.updated_at = max(incident.updated_at, now)
        return entry

    async def _claims(self, request: web.Request, conn: asyncpg.Connection) -> AckClaims:
        token = request.match_info["token"]
        try:
            key = await hub_key_of(conn, token_kid(token))
            if key is None:
                raise AckTokenInvalid("unknown kid")
            return read_ack(token, key.secret, now=self._clock().timestamp())
        except AckTokenInvalid as err:
            raise _Refused(_not_valid(request, err.reason)) from None

    async def _already(
        self, request: web.Request, conn: asyncpg.Connection, incident: Incident
    ) -> web.Response:
        by = await ack_links.acknowledged_by(conn, incident.tenant, incident.id)
        who = f", acknowledged by {by[0]} at {rfc3339(by[1])}" if by is not None else ""
        return page(
            200,
            f"Already {incident.status}",
            f"This incident is {incident.status} already{who}; nothing was changed.",
            self._facts(request, incident),
        )

    def _facts(self, request: web.Request, incident: Incident) -> IncidentFacts:
        registered = self._sites().site(incident.site)
        lang = language(request.headers.get("Accept-Language"), registered.timezone if registered else None)
        shown = incident_json(incident, lang)
        return IncidentFacts(
            title=str(shown["title"]),
            site=registered.name if registered is not None else incident.site,
            severity=str(incident.severity),
            status=str(incident.status),
        )


def _wants_json(request: web.Request) -> bool:
    # A browser asks for HTML; any other client gets the problem+json every refusal of the API is.
    return "text/html" not in request.headers.get("Accept", "").lower()


def _not_valid(request: web.Request, reason: str) -> web.Response:
    # The reason goes to the log only (with no part of the token).
    log.info("ack_link_refused", reason=reason, method=request.method, source=request.remote)
    if _wants_json(request):
        problem = Problem(
            404, "Not found", "this acknowledgement link is not valid", slug="ack-link-not-valid"
        )
        return problem_response(problem, _INSTANCE)
    return page(404, "Link not valid", "This acknowledgement link is not valid or has expired.")


def _used(request: web.Request, used: ack_links.UsedLink) -> web.Response:
    when = rfc3339(used.used_at) or ""
    detail = f"this link was used already, by {used.used_by} at {when}"
    if _wants_json(request):
        problem = Problem(410, "Gone", detail, slug="ack-link-used", usedBy=used.used_by, usedAt=when)
        return problem_response(problem, _INSTANCE)
    return page(410, "Link used already", f"This acknowledgement link was used by {used.used_by} at {when}.")
