"""Climbs on the move: each incident a policy took climbs its steps (domain/policy.py), its timer
a row of `escalation_climbs`.

`on_changes` runs in the consumer's unit of work: an opening a policy takes starts a climb and
notifies its first step; every later change keeps the incident as it is now in the climb's row;
an acknowledgement, a resolution or a closing stops the climb. `run` finds the due climbs every
`poll_interval_s`, each pass one transaction that locks them (`FOR UPDATE SKIP LOCKED`: any number
of workers, each climb advanced once), reads their policies as they are now, queues the next
notification (`org.safetyhub.incident.escalated.v1`, the incident as of its latest change) and
moves the timer, committed together. A step during a maintenance window that mutes the incident
is recorded as held (muting.py), and the climb's timer moves on all the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import asyncpg

from services.common.contracts import IncidentChange
from services.common.contracts.ids import derived_id
from services.common.logging import get_logger
from services.escalation.adapters import deliveries_db, endpoints_db, policies_db
from services.escalation.adapters.deliveries_db import Queued
from services.escalation.adapters.endpoints_db import EndpointRow
from services.escalation.adapters.incident_change import ChangeMessage, change_of
from services.escalation.adapters.policies_db import ClimbRow
from services.escalation.domain import policy as climbing
from services.escalation.domain.muting import Subject
from services.escalation.muting import mute, subject_of
from services.escalation.render import Renderer
from services.escalation.timer_loop import BATCH, TimerLoop

log = get_logger(__name__)
ESCALATED = "escalated"
# Changes after which nobody need be paged any more.
STOPS = {
    "acknowledged": "acknowledged",
    "dispatched": "acknowledged",
    "resolved": "resolved",
    "closed": "resolved",
}


def webhook_id(change_id: str, endpoint_id: str, at: datetime) -> str:
    """A change's delivery to an endpoint: the same for the same change and endpoint, whoever
    computes it."""
    return "msg_" + derived_id(int(at.timestamp() * 1000), change_id, endpoint_id)


def notification_id(incident_id: str, step: int, round_: int, endpoint_id: str, at: datetime) -> str:
    return "msg_" + derived_id(int(at.timestamp() * 1000), incident_id, str(step), str(round_), endpoint_id)


def queued(
    renderer: Renderer,
    change: ChangeMessage,
    endpoint: EndpointRow,
    delivery_id: str,
    extra: dict[str, object],
    *,
    earlier: list[str] | None = None,
) -> Queued:
    rendered = renderer.render(change, endpoint, delivery_id, extra or None, earlier or ())
    if rendered.cap_reference is not None and earlier is not None:
        earlier.append(rendered.cap_reference)
    return Queued(
        id=delivery_id,
        tenant=change.tenant,
        endpoint_id=endpoint.id,
        incident_id=change.incident_id,
        site=change.site,
        change=change.change,
        event_type=f"org.safetyhub.incident.{change.change}.v1",
        body=rendered.body,
        content_type=rendered.content_type,
        created_at=change.at,
        cap_reference=rendered.cap_reference,
    )


class Climber(TimerLoop):
    def __init__(
        self,
        pool: asyncpg.Pool,
        renderer: Renderer,
        *,
        poll_interval_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(name="climbs", poll_interval_s=poll_interval_s)
        self._pool = pool
        self._renderer = renderer
        self._clock = clock

    # ------------------------------------------------------------------ the consumer's part

    async def on_changes(
        self,
        conn: asyncpg.Connection,
        changes: Sequence[ChangeMessage],
        endpoints: dict[str, list[EndpointRow]],
    ) -> list[Queued]:
        """Start, follow and stop climbs for a batch of changes; the first steps' deliveries."""
        out: list[Queued] = []
        by_tenant: dict[str, list[ChangeMessage]] = {}
        for c in changes:
            by_tenant.setdefault(c.tenant, []).append(c)
        for tenant, theirs in by_tenant.items():
            climbs = await policies_db.climbs_of(conn, tenant, sorted({c.incident_id for c in theirs}))
            policies: list[climbing.Policy] | None = None
            for change in theirs:
                row = climbs.get(change.incident_id)
                if row is None:
                    if change.change != "opened":
                        continue
                    if policies is None:
                        policies = [r.policy for r in await policies_db.of_tenant(conn, tenant)]
                    chosen = climbing.choose(
                        policies, site=change.site, severity=change.severity, incident_type=change.type
                    )
                    if chosen is None:
                        continue
                    climb, notify = climbing.start(chosen, change.incident_id, change.severity, self._clock())
                    row = ClimbRow(tenant, change.site, climb, change.severity, -1, b"")
                    climbs[change.incident_id] = row
                    by_id = {e.id: e for e in endpoints.get(tenant, []) if e.enabled}
                    for endpoint_id in notify.endpoints:
                        endpoint = by_id.get(endpoint_id)
                        if endpoint is not None:
                            # The opening's own id: an endpoint that also takes it by its filter
                            # gets it once.
                            extra = {"escalationpolicy": chosen.id, "escalationstep": 0, "escalationround": 0}
                            out.append(
                                queued(
                                    self._renderer,
                                    change,
                                    endpoint,
                                    webhook_id(change.id, endpoint.id, change.at),
                                    extra,
                                )
                            )
                    log.info(
                        "climb_started", incident_id=change.incident_id, site=change.site, policy=chosen.id
                    )
                version = change.message.incident.version
                if version >= row.version:
                    row.version, row.latest, row.severity = (
                        version,
                        change.message.SerializeToString(),
                        change.severity,
                    )
                why = STOPS.get(change.change)
                if why is not None and row.climb.climbing:
                    row.climb = climbing.stop(row.climb, why)
                    log.info("climb_stopped", incident_id=change.incident_id, site=change.site, why=why)
                await policies_db.save_climb(conn, row)
        return out

    # ------------------------------------------------------------------ the timer's part

    async def run_pass(self) -> int:
        return await self.advance_due()

    async def advance_due(self) -> int:
        """One pass: every due climb advanced and its notification queued; how many moved."""
        now = self._clock()
        async with self._pool.acquire() as conn, conn.transaction():
            due = await policies_db.due_climbs(conn, now, BATCH)
            if not due:
                return 0
            policies = await policies_db.policies_by_id(conn, {(r.tenant, r.climb.policy_id) for r in due})
            endpoints = await endpoints_db.of_tenants(conn, sorted({r.tenant for r in due}))
            rows: list[Queued] = []
            subjects: dict[tuple[str, str], Subject] = {}
            # The CAP alerts each endpoint has had of each incident, for the step's references.
            earlier: dict[tuple[str, str], list[str]] = {}
            for tenant in {r.tenant for r in due}:
                if any(e.format == "cap" for e in endpoints.get(tenant, [])):
                    incidents = sorted({r.climb.incident_id for r in due if r.tenant == tenant})
                    earlier |= await deliveries_db.cap_references(conn, tenant, incidents)
            for row in due:
                policy = policies.get((row.tenant, row.climb.policy_id))
                row.climb, notify = climbing.advance(policy, row.climb, row.severity, now)
                await policies_db.save_climb(conn, row)
                if notify is None or policy is None:
                    log.info("climb_ended", incident_id=row.climb.incident_id, why=row.climb.stopped)
                    continue
                change = change_of(IncidentChange.FromString(row.latest), change=ESCALATED, at=now)
                subjects[(row.tenant, row.climb.incident_id)] = subject_of(change)
                by_id = {e.id: e for e in endpoints.get(row.tenant, []) if e.enabled}
                extra = {
                    "escalationpolicy": policy.id,
                    "escalationstep": notify.step,
                    "escalationround": notify.round,
                }
                for endpoint_id in notify.endpoints:
                    endpoint = by_id.get(endpoint_id)
                    if endpoint is None:
                        continue
                    delivery_id = notification_id(
                        row.climb.incident_id, notify.step, notify.round, endpoint.id, now
                    )
                    refs = earlier.setdefault((row.climb.incident_id, endpoint.id), [])
                    rows.append(queued(self._renderer, change, endpoint, delivery_id, extra, earlier=refs))
                log.info(
                    "climb_stepped",
                    incident_id=row.climb.incident_id,
                    site=row.site,
                    step=notify.step,
                    round=notify.round,
                    endpoints=len(notify.endpoints),
                )
            rows = await mute(conn, rows, subjects, now)
            await deliveries_db.queue(conn, rows, now)
        return len(due)
