"""POST /v1/alarms/{id}/{action}?site=S: a person's action on an alarm (the write side of the API).

`{id}` is the alarm id of alarm_points (`<device>--<rule>`, a voting group's `<group>--vote`) and
`site` names its site: alarm ids are unique within a site. Actions: ack, shelve, unshelve,
suppress, unsuppress, out-of-service, return-to-service; body `{"reason": "...", "duration_s": N}`
(reason required for shelve, suppress and out-of-service; `duration_s` only for shelve, at most
the class maximum; without it the shelve is one-shot: until the condition next clears).

Each action is one unit of work: the site's and the alarm's rows locked (repository.py), the
request applied by the engine (its timers due by now fired first), the point and the transition
written, the audit row recorded and the transition emitted through the outbox, then committed.
An alarm the caller may not see (another tenant's, another site's) is 404 like one that does not
exist; an action the state refuses is 409 naming the state; a wrong field is 422 naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from aiohttp import web

from services.alarms.domain.actions import (
    Ack,
    IllegalAction,
    InvalidAction,
    OutOfService,
    Request,
    ReturnToService,
    Shelve,
    Suppress,
    SuppressionKind,
    Unshelve,
    Unsuppress,
)
from services.alarms.domain.engine import Engine
from services.alarms.domain.model import PointId
from services.alarms.domain.workset import VOTE_RULE, Handling, PointRecord, Workset, is_latched
from services.alarms.permissions import ACT_ON_ALARMS
from services.alarms.repository import lock_points, lock_sites
from services.alarms.service import AlarmsService
from services.common.audit import AuditEntry, record
from services.common.auth.principal import Principal
from services.common.http.middleware import principal_of
from services.common.http.problem import Problem, invalid_query
from services.common.logging import get_logger
from services.common.sites.registry import SiteRegistry

log = get_logger(__name__)

MAX_BODY_BYTES = 16 * 1024
_PARAMS = frozenset({"site"})
# The path's action, the audit trail's name for it, and whether it needs a reason.
ACTIONS: dict[str, tuple[str, bool]] = {
    "ack": ("alarm.acknowledged", False),
    "shelve": ("alarm.shelved", True),
    "unshelve": ("alarm.unshelved", False),
    "suppress": ("alarm.suppressed", True),
    "unsuppress": ("alarm.unsuppressed", False),
    "out-of-service": ("alarm.removed_from_service", True),
    "return-to-service": ("alarm.returned_to_service", False),
}
# The domain's field names as the body spells them.
_FIELDS = {"duration": "duration_s", "reason": "reason"}


class ActionBody(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    # No U+0000: PostgreSQL text cannot hold it (refused here as 422, not a 500 at the insert).
    reason: Annotated[str, msgspec.Meta(max_length=4000, pattern="^[^\\x00]*$")] = ""
    duration_s: Annotated[float, msgspec.Meta(gt=0)] | None = None


_BODY = msgspec.json.Decoder(ActionBody)


def invalid_field(field: str, detail: str) -> Problem:
    return Problem(
        422,
        "Invalid action",
        f"{field}: {detail}",
        slug="invalid-action",
        errors=[{"field": field, "detail": detail}],
    )


def alarm_json(point: PointId, record: PointRecord, handling: Handling) -> dict[str, Any]:
    """The alarm as alarm_points holds it, with its rule's rationale."""
    state = record.state
    rationale = handling.rationale
    flags = sorted(record.flags | ({"confirmed"} if point.rule == VOTE_RULE else set()))
    return {
        "site": point.site,
        "alarmId": point.alarm_id,
        "device": point.device,
        "ruleId": point.rule,
        "condition": handling.condition.value,
        "priority": handling.priority.value,
        "alarmClass": handling.alarm_class.value,
        "state": state.state.value,
        "active": state.active,
        "latched": is_latched(state, handling),
        "shelvedUntil": _time(state.shelved_until),
        "flags": flags,
        "changedAt": _time(state.changed_at),
        "due": _time(record.due),
        "snapshot": state.snapshot or None,
        "rationale": {
            "cause": {"ko": rationale.cause.ko, "en": rationale.cause.en},
            "consequence": {"ko": rationale.consequence.ko, "en": rationale.consequence.en},
            "action": {"ko": rationale.action.ko, "en": rationale.action.en},
            "timeToRespondS": rationale.time_to_respond.total_seconds(),
        },
    }


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class AlarmActionsApi:
    def __init__(
        self,
        service: AlarmsService,
        engine: Callable[[], Engine],
        registry: Callable[[], SiteRegistry],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._service = service
        self._engine = engine
        self._registry = registry
        self._clock = clock

    def add_routes(self, app: web.Application) -> None:
        for action in ACTIONS:
            app.router.add_post(f"/v1/alarms/{{id}}/{action}", self.act)

    async def act(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        action = request.path.rsplit("/", 1)[1]
        if not principal.may(ACT_ON_ALARMS):
            raise Problem(403, "Forbidden", f"role '{principal.role}' may not act on alarms")
        site = self._site(request, principal)
        alarm_id = request.match_info["id"]
        body = await self._body(request)
        device, sep, rule = alarm_id.rpartition("--")
        if not sep or not device:
            raise self._not_found(alarm_id, site)
        point = PointId(principal.tenant, site, device, rule)
        engine = self._engine()
        handling = engine.handling(point)
        if handling is None:
            raise self._not_found(alarm_id, site)
        outbox = self._service.outbox
        async with outbox.unit_of_work() as uow:
            work = Workset()
            await lock_sites(uow.connection, [(point.tenant, site)], work)
            await lock_points(uow.connection, {point, *engine.group_keys(point.tenant, site, device)}, work)
            if point not in work.points:
                raise self._not_found(alarm_id, site)
            now = self._clock()
            cap = engine.rules.class_limits.max_shelve_of(handling.alarm_class)
            wanted = self._request(action, body, principal, now, cap)
            try:
                engine.act(work, point, wanted)
            except InvalidAction as err:
                raise invalid_field(_FIELDS.get(err.field, err.field), err.detail) from None
            except IllegalAction as err:
                raise Problem(
                    409,
                    "Conflict",
                    f"{action} is not possible in state {err.state.value}: {err.detail}",
                    slug="alarm-state-conflict",
                    state=err.state.value,
                ) from None
            await self._service.commit(uow, engine, work)
            audit, _ = ACTIONS[action]
            detail: dict[str, Any] = {"site": site, "state": work.points[point].state.state.value}
            if body.duration_s is not None:
                detail["duration_s"] = body.duration_s
            await record(
                uow.connection,
                AuditEntry.by(
                    principal,
                    audit,
                    target=alarm_id,
                    reason=body.reason,
                    source=request.remote,
                    detail=detail,
                ),
            )
        log.info("alarm_action", site=site, alarm_id=alarm_id, action=action, actor=principal.actor)
        payload = alarm_json(point, work.points[point], handling)
        return web.Response(body=msgspec.json.encode(payload), content_type="application/json")

    def _site(self, request: web.Request, principal: Principal) -> str:
        unknown = sorted(set(request.query) - _PARAMS)
        if unknown:
            raise invalid_query(unknown[0], f"unknown parameter; known are {', '.join(sorted(_PARAMS))}")
        site = request.query.get("site")
        if not site:
            raise invalid_query("site", "required: the alarm's site")
        registry = self._registry()
        if not principal.may_access_site(site, registry.tenant_of(site)):
            raise self._not_found(request.match_info["id"], site)
        return site

    async def _body(self, request: web.Request) -> ActionBody:
        chunks, size = [], 0
        async for chunk in request.content.iter_chunked(4096):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise Problem(
                    413, "Content too large", f"an action's body takes at most {MAX_BODY_BYTES} bytes"
                )
            chunks.append(chunk)
        data = b"".join(chunks)
        if not data.strip():
            return ActionBody()
        try:
            return _BODY.decode(data)
        except msgspec.ValidationError as err:
            field = _field_of(str(err))
            raise invalid_field(field, str(err)) from None
        except msgspec.DecodeError as err:
            raise Problem(400, "Invalid body", f"not a JSON object: {err}", slug="invalid-body") from None

    @staticmethod
    def _request(
        action: str, body: ActionBody, principal: Principal, now: datetime, cap: timedelta
    ) -> Request:
        _, needs_reason = ACTIONS[action]
        if needs_reason and not body.reason.strip():
            raise invalid_field("reason", f"a reason is required to {action}")
        if body.duration_s is not None and action != "shelve":
            raise invalid_field("duration_s", "only a shelve takes a duration")
        by, reason = principal.actor, body.reason
        match action:
            case "ack":
                return Ack(now, by, reason)
            case "shelve":
                duration = None
                if body.duration_s is not None:
                    if body.duration_s <= 0 or body.duration_s > 10 * 365 * 86400:
                        raise invalid_field("duration_s", "must be a positive number of seconds")
                    duration = timedelta(seconds=body.duration_s)
                return Shelve(now, by, reason, duration, cap)
            case "unshelve":
                return Unshelve(now, by, reason)
            case "suppress":
                return Suppress(now, SuppressionKind.API, by, reason)
            case "unsuppress":
                return Unsuppress(now, SuppressionKind.API, by, reason)
            case "out-of-service":
                return OutOfService(now, by, reason)
            case _:
                return ReturnToService(now, by, reason)

    @staticmethod
    def _not_found(alarm_id: str, site: str) -> Problem:
        # The same answer for an alarm that does not exist and one the caller may not see.
        return Problem(404, "Not found", f"no alarm '{alarm_id}' at site '{site}' that this key may act on")


def _field_of(message: str) -> str:
    # msgspec says "... - at `$.duration_s`" or "Object contains unknown field `x`".
    for marker in ("`$.", "field `"):
        if marker in message:
            return message.split(marker, 1)[1].split("`", 1)[0].split(".", 1)[0].split("[", 1)[0]
    return "body"
