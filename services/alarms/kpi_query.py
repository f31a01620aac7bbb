"""The rows behind one site's alarm KPIs for a window, read from the alarm engine's tables.

Reads alarm_transitions (activations and the chattering / fleeting flags inside the window; the
state every point was left in at the window's end), alarm_floods (floods overlapping the window)
and alarm_points (the site's points) into the pure `KpiWindow` of domain/kpis.py.

The state at the window's end is the last transition before it, found per point by one descent
of the index alarm_transitions_alarm, so a window in the past reports the shelved, suppressed and
stale alarms of its own end, not of today.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

import asyncpg

from services.alarms.adapters.wire import CHATTERING, FLEETING
from services.alarms.domain.kpis import Activation, Flood, KpiWindow, PointAtEnd
from services.alarms.domain.model import AlarmState, Priority

ACTIVATIONS_SQL = """
SELECT alarm_id, priority, at FROM alarm_transitions
WHERE tenant = $1 AND site = $2 AND at >= $3 AND at < $4 AND activation
ORDER BY at, seq
"""

FLAGGED_SQL = """
SELECT coalesce(array_agg(DISTINCT alarm_id) FILTER (WHERE $5 = ANY(flags)), '{}') AS chattering,
       coalesce(array_agg(DISTINCT alarm_id) FILTER (WHERE $6 = ANY(flags)), '{}') AS fleeting
FROM alarm_transitions
WHERE tenant = $1 AND site = $2 AND at >= $3 AND at < $4 AND flags <> '{}'
"""

FLOODS_SQL = """
SELECT began_at, ended_at FROM alarm_floods
WHERE tenant = $1 AND site = $2 AND began_at < $4 AND (ended_at IS NULL OR ended_at > $3)
ORDER BY began_at
"""

# Per point: its last transition before the end and its latest activation before the end.
POINTS_AT_END_SQL = """
SELECT p.alarm_id, coalesce(last.new_state, 'NORM') AS state, since.at AS active_since
FROM alarm_points p
LEFT JOIN LATERAL (
    SELECT t.new_state FROM alarm_transitions t
    WHERE t.tenant = p.tenant AND t.site = p.site AND t.alarm_id = p.alarm_id AND t.at < $3
    ORDER BY t.at DESC, t.seq DESC
    LIMIT 1
) AS last ON true
LEFT JOIN LATERAL (
    SELECT t.at FROM alarm_transitions t
    WHERE t.tenant = p.tenant AND t.site = p.site AND t.alarm_id = p.alarm_id AND t.at < $3
      AND t.activation
    ORDER BY t.at DESC, t.seq DESC
    LIMIT 1
) AS since ON true
WHERE p.tenant = $1 AND p.site = $2
ORDER BY p.alarm_id
"""

_SHOWN_ACTIVE = frozenset({AlarmState.UNACK.value, AlarmState.ACKED.value})


async def load_kpi_window(
    pool: asyncpg.Pool, tenant: str, site: str, start: datetime, end: datetime, *, zone: tzinfo
) -> KpiWindow:
    """The rows of `site` for [start, end), read in one snapshot (REPEATABLE READ), so the
    figures agree with each other while the engine writes."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        activations = await conn.fetch(ACTIVATIONS_SQL, tenant, site, start, end)
        flagged = await conn.fetchrow(FLAGGED_SQL, tenant, site, start, end, CHATTERING, FLEETING)
        floods = await conn.fetch(FLOODS_SQL, tenant, site, start, end)
        points = await conn.fetch(POINTS_AT_END_SQL, tenant, site, end)
    return KpiWindow(
        start=start,
        end=end,
        activations=[Activation(r["alarm_id"], Priority(r["priority"]), r["at"]) for r in activations],
        floods=[Flood(r["began_at"], r["ended_at"]) for r in floods],
        chattering=frozenset(flagged["chattering"]) if flagged else frozenset(),
        fleeting=frozenset(flagged["fleeting"]) if flagged else frozenset(),
        points=[
            PointAtEnd(
                r["alarm_id"],
                r["state"],
                # Only a point still shown active can be stale.
                r["active_since"] if r["state"] in _SHOWN_ACTIVE else None,
            )
            for r in points
        ],
        zone=zone,
    )
