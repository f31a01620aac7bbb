"""Maintenance muting applied to deliveries about to be queued (domain/muting.py decides).

Called in the unit of work that queues them (the consumer's, the climb timer's): a held delivery
is queued all the same, with status `muted` and the reason in its `lastError`, so a control room
sees in GET /v1/deliveries what was not sent and why; its incident gets a row of
`escalation_held`, the timer that looks again when the muting may end (maintenance_timer.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

import asyncpg

from services.alarms.adapters.wire import CLASS_BACK
from services.common.contracts import IncidentChange
from services.common.logging import get_logger
from services.escalation import metrics
from services.escalation.adapters import maintenance_db
from services.escalation.adapters.deliveries_db import Queued
from services.escalation.adapters.incident_change import ChangeMessage
from services.escalation.domain.muting import NEVER_HELD, Held, Subject, hold, safety_class

log = get_logger(__name__)


def subject_of(change: ChangeMessage) -> Subject:
    message: IncidentChange = change.message
    incident = message.incident
    classes = [str(CLASS_BACK.get(m.alarm_class, "")) for m in incident.members]
    return Subject(change.site, tuple(incident.zones), safety_class(change.type, classes))


async def mute(
    conn: asyncpg.Connection,
    rows: Sequence[Queued],
    subjects: Mapping[tuple[str, str], Subject],
    now: datetime,
) -> list[Queued]:
    """`rows` with those held by an active window marked `muted`; their incidents' timers set.

    `subjects`: per (tenant, incident id), the incident as its latest change left it. A row whose
    incident is not there is sent (nothing known to mute it by).
    """
    candidates = [r for r in rows if r.change not in NEVER_HELD and (r.tenant, r.incident_id) in subjects]
    if not candidates:
        return list(rows)
    windows = await maintenance_db.windows_of_tenants(conn, sorted({r.tenant for r in candidates}))
    if not any(windows.values()):
        return list(rows)
    decided: dict[tuple[str, str], Held | None] = {}
    timers: dict[tuple[str, str], maintenance_db.Held] = {}
    out: list[Queued] = []
    for row in rows:
        key = (row.tenant, row.incident_id)
        subject = subjects.get(key)
        if subject is None or row.change in NEVER_HELD:
            out.append(row)
            continue
        if key not in decided:
            decided[key] = hold(windows.get(row.tenant, []), subject, row.change, now)
        held = decided[key]
        if held is None:
            out.append(row)
            continue
        out.append(replace(row, status="muted", reason=held.reason))
        timers[key] = maintenance_db.Held(
            row.tenant, row.incident_id, subject.site, subject.zones, held.look_again(now)
        )
        log.info(
            "notification_muted",
            incident_id=row.incident_id,
            site=row.site,
            endpoint=row.endpoint_id,
            change=row.change,
            windows=list(held.windows),
        )
    if timers:
        await maintenance_db.hold(conn, list(timers.values()))
        metrics.MUTED.inc(sum(1 for r in out if r.status == "muted"))
    return out
