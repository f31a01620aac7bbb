"""POST /v1/incidents/{id}/{action}: a person's change of an incident (the write side of the API).

Actions: ack, assign, dispatch, resolve, close, reopen, comments (photos: attachments_api.py).
Optimistic concurrency: every answer about an incident carries its `ETag` (its version); a
change must send it back in `If-Match`. A stale one is 412, so two responders never both take
an incident unknowingly; a missing one is 428. An action the status refuses is 409 naming the status.

Each action is one unit of work: the site's row and the incident's locked (repository.py), the
version checked, the change decided (domain/lifecycle.py), the incident and its timeline entry
written, the audit row recorded and the change emitted through the outbox, then committed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

import msgspec
from aiohttp import web

from services.common.audit import AuditEntry, record
from services.common.auth.principal import Principal
from services.common.contracts.ids import derived_id
from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.common.http.middleware import principal_of
from services.common.http.problem import Problem, invalid_query
from services.common.logging import get_logger
from services.incidents import repository
from services.incidents.domain.incident import Incident
from services.incidents.domain.lifecycle import CAUSE_CODES, Action, IllegalTransition, decide
from services.incidents.domain.timeline import CHANGE_OF_ACTION, Entry
from services.incidents.permissions import ASSIGN_INCIDENTS, WORK_INCIDENTS
from services.incidents.read_api import INCIDENT_ID, IncidentReadApi, not_found
from services.incidents.read_json import detail_json, etag, language
from services.incidents.read_query import timeline_of
from services.incidents.service import IncidentsService

log = get_logger(__name__)

MAX_BODY_BYTES = 16 * 1024
# The path's action and the lifecycle's.
ACTIONS: dict[str, Action] = {
    "ack": Action.ACK,
    "assign": Action.ASSIGN,
    "dispatch": Action.DISPATCH,
    "resolve": Action.RESOLVE,
    "close": Action.CLOSE,
    "reopen": Action.REOPEN,
    "comments": Action.COMMENT,
}
# Which body fields each action takes (beyond `note`).
_FIELDS: dict[Action, frozenset[str]] = {
    Action.ACK: frozenset(),
    Action.ASSIGN: frozenset({"assignee"}),
    Action.DISPATCH: frozenset({"assignee"}),
    Action.RESOLVE: frozenset({"code"}),
    Action.CLOSE: frozenset(),
    Action.REOPEN: frozenset(),
    Action.COMMENT: frozenset(),
}

# No U+0000: PostgreSQL text cannot hold it (refused here as 422, not a 500 at the insert).
Note = Annotated[str, msgspec.Meta(max_length=4000, pattern="^[^\\x00]*$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern="^[^\\x00]*\\S[^\\x00]*$")]


class ActionBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    note: Note = ""
    assignee: Name | None = None
    code: Annotated[str, msgspec.Meta(max_length=64)] | None = None


_BODY = msgspec.json.Decoder(ActionBody)


def invalid_field(field: str, detail: str) -> Problem:
    return Problem(
        422,
        "Invalid action",
        f"{field}: {detail}",
        slug="invalid-action",
        errors=[{"field": field, "detail": detail}],
    )


def required_if_match(request: web.Request) -> str:
    """The request's If-Match; 428 without one: a change must name the version it saw."""
    if_match = request.headers.get("If-Match")
    if if_match is None:
        raise Problem(
            428,
            "Precondition required",
            "send the incident's ETag in If-Match: a change must name the version it saw",
            slug="precondition-required",
        )
    return if_match


def matches(if_match: str, version: int) -> bool:
    """RFC 9110 If-Match: `*`, or a list of entity tags compared strongly (a weak one never matches)."""
    if if_match.strip() == "*":
        return True
    return any(tag.strip() == etag(version) for tag in if_match.split(","))


class IncidentActionsApi:
    def __init__(
        self,
        service: IncidentsService,
        reads: IncidentReadApi,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._service = service
        self._reads = reads
        self._clock = clock

    def add_routes(self, app: web.Application) -> None:
        for name in ACTIONS:
            app.router.add_post(f"/v1/incidents/{{id}}/{name}", self.act)

    async def act(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        name = request.path.rsplit("/", 1)[1]
        action = ACTIONS[name]
        needed = ASSIGN_INCIDENTS if action is Action.ASSIGN else WORK_INCIDENTS
        if not principal.may(needed):
            raise Problem(403, "Forbidden", f"role '{principal.role}' may not {name} incidents")
        if request.query:
            raise invalid_query(sorted(request.query)[0], "unknown parameter; this route takes none")
        incident_id = request.match_info["id"]
        readable = self._reads.readable(principal)
        if not INCIDENT_ID.match(incident_id):
            raise not_found(incident_id)
        body = await self._body(request, action)
        try:
            return await self._apply(
                request,
                principal=principal,
                incident_id=incident_id,
                readable=readable,
                action=action,
                body=body,
            )
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError("PostgreSQL is unreachable") from err

    async def _apply(
        self,
        request: web.Request,
        *,
        principal: Principal,
        incident_id: str,
        readable: list[str],
        action: Action,
        body: ActionBody,
    ) -> web.Response:
        async with self._service.outbox.unit_of_work() as uow:
            conn = uow.connection
            site = await repository.incident_site(conn, principal.tenant, incident_id)
            if site is None or site not in readable:
                raise not_found(incident_id)
            if_match = required_if_match(request)
            # The site first, as fusion does: the two never deadlock.
            await repository.lock_sites(conn, [(principal.tenant, site)])
            incident = await repository.lock_incident(conn, principal.tenant, incident_id)
            if incident is None:
                raise not_found(incident_id)
            if not matches(if_match, incident.version):
                raise Problem(
                    412,
                    "Precondition failed",
                    f"the incident changed since: it is at version {incident.version} ({incident.status})",
                    slug="stale-etag",
                    headers={"ETag": etag(incident.version)},
                    incidentStatus=str(incident.status),
                    version=incident.version,
                )
            try:
                outcome = decide(action, incident.status)
            except IllegalTransition as err:
                raise Problem(
                    409,
                    "Conflict",
                    str(err),
                    slug="incident-status-conflict",
                    incidentStatus=str(err.status),
                ) from None
            now = self._clock()
            what = self._change(incident, action, body, principal)
            incident.status = outcome.new
            entry = Entry(
                id=derived_id(int(now.timestamp() * 1000), incident.id, action, str(incident.version)),
                incident_id=incident.id,
                at=now,
                actor=principal.actor,
                change=CHANGE_OF_ACTION[action],
                what=what,
                status=incident.status,
                note=body.note,
                cause=request.headers.get("X-Request-Id", ""),
                tenant=incident.tenant,
            )
            await repository.add_entries(conn, [entry])
            incident.version += 1
            incident.updated_at = max(incident.updated_at, now)
            await repository.save_incident(conn, incident)
            self._service.publish(uow, entry, incident)
            await record(
                conn,
                AuditEntry.by(
                    principal,
                    f"incident.{entry.change}",
                    target=incident.id,
                    reason=body.note,
                    source=request.remote,
                    detail={"site": site, "status": str(incident.status), "version": incident.version},
                ),
            )
            timeline = await timeline_of(conn, principal.tenant, incident.id)
            photos = await repository.attachments_of(conn, principal.tenant, incident.id)
        log.info(
            "incident_action",
            site=site,
            incident_id=incident.id,
            action=str(action),
            actor=principal.actor,
            correlation_id=incident.correlation_id or None,
        )
        registered = self._reads.site_timezone(site)
        lang = language(request.headers.get("Accept-Language"), registered)
        payload = detail_json(incident, lang, timeline, photos)
        return web.Response(
            body=msgspec.json.encode(payload),
            content_type="application/json",
            headers={"ETag": etag(incident.version)},
        )

    @staticmethod
    def _change(incident: Incident, action: Action, body: ActionBody, principal: Principal) -> str:
        """Apply the action's fields to the incident; what the timeline says happened."""
        who = principal.actor
        match action:
            case Action.ACK:
                # Acknowledging takes it, unless someone has it already.
                if not incident.assignee:
                    incident.assignee = who
                return f"acknowledged by {who}"
            case Action.ASSIGN | Action.DISPATCH if body.assignee is not None:
                incident.assignee = body.assignee.strip()
                verb = "assigned to" if action is Action.ASSIGN else "dispatched:"
                return f"{verb} {incident.assignee}"
            case Action.DISPATCH:
                if not incident.assignee:
                    incident.assignee = who
                return f"dispatched: {incident.assignee}"
            case Action.RESOLVE:
                incident.resolution_code = body.code or ""
                incident.resolution_note = body.note
                return f"resolved by {who}: {body.code}"
            case Action.CLOSE:
                return f"closed by {who}"
            case Action.REOPEN:
                incident.resolution_code, incident.resolution_note = "", ""
                return f"reopened by {who}"
            case _:
                return f"comment by {who}"

    async def _body(self, request: web.Request, action: Action) -> ActionBody:
        chunks, size = [], 0
        async for chunk in request.content.iter_chunked(4096):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise Problem(
                    413, "Content too large", f"an action's body takes at most {MAX_BODY_BYTES} bytes"
                )
            chunks.append(chunk)
        data = b"".join(chunks)
        body = ActionBody()
        if data.strip():
            try:
                body = _BODY.decode(data)
            except msgspec.ValidationError as err:
                raise invalid_field(_field_of(str(err)), str(err)) from None
            except msgspec.DecodeError as err:
                raise Problem(400, "Invalid body", f"not a JSON object: {err}", slug="invalid-body") from None
        given = {f for f in ("assignee", "code") if getattr(body, f) is not None}
        extra = sorted(given - _FIELDS[action])
        if extra:
            raise invalid_field(extra[0], f"{action} takes no {extra[0]}")
        if action is Action.ASSIGN and body.assignee is None:
            raise invalid_field("assignee", "required: the responder or team to assign it to")
        if action is Action.RESOLVE and body.code not in CAUSE_CODES:
            raise invalid_field("code", f"required, one of {', '.join(sorted(CAUSE_CODES))}")
        if action in (Action.REOPEN, Action.COMMENT) and not body.note.strip():
            what = "the comment" if action is Action.COMMENT else "why it is reopened"
            raise invalid_field("note", f"required: {what}")
        return body


def _field_of(message: str) -> str:
    for marker in ("`$.", "field `"):
        if marker in message:
            return message.split(marker, 1)[1].split("`", 1)[0].split(".", 1)[0].split("[", 1)[0]
    return "body"
