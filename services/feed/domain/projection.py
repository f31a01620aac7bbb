"""Projections: the part of an incident change, an alarm transition or an hour's counts that a
sharing policy lets leave. Pure functions of (facts, policy, places); time is in the facts.

A projection is a flat JSON object whose keys are policy field names (domain/policy.py), built
only from the fields the policy allows: a field the policy does not name is never computed, so it
cannot leak through a default or a nested value. Locations are GeoJSON points ([lon, lat]).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from services.feed.domain.facts import AlarmFacts, IncidentFacts, Position, SitePlaces
from services.feed.domain.policy import Kind, Level, SharingPolicy
from services.feed.domain.snapshots import blurred

# A shared record: field name -> JSON value; its keys are always a subset of the policy's allowed.
Shared = dict[str, Any]

_METRES_PER_DEGREE = 111_320.0  # along a meridian, and along the equator
# Coarse positions keep six decimals (about 0.1 m): more would only echo the exact input.
_DECIMALS = 6
# A `full` incident carries its first members in the order they joined (a flood's first-out
# ranking), not all of them: a flood of 500 alarms would otherwise weigh every change of it with
# 500 members. Its `counts` keep the totals by class and priority.
MEMBERS_CARRIED = 50


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def snap_to_grid(position: Position, grid_m: float) -> Position:
    """The centre of the square cell of `grid_m` metres holding `position`.

    Rows of cells are bands of latitude; within a row the cell width in degrees of longitude uses
    the row's centre latitude, so every point of a cell snaps to the same centre."""
    lat_m = position.lat * _METRES_PER_DEGREE
    lat = (math.floor(lat_m / grid_m) + 0.5) * grid_m / _METRES_PER_DEGREE
    lat = max(-90.0, min(90.0, lat))
    per_degree_lon = _METRES_PER_DEGREE * max(math.cos(math.radians(lat)), 1e-6)
    lon_m = position.lon * per_degree_lon
    lon = (math.floor(lon_m / grid_m) + 0.5) * grid_m / per_degree_lon
    lon = (lon + 180.0) % 360.0 - 180.0
    return Position(round(lat, _DECIMALS), round(lon, _DECIMALS))


def coarse_position(
    exact: Position | None, zones: tuple[str, ...], places: SitePlaces, grid_m: float | None
) -> Position:
    """Where a redacted event is placed: the grid cell's centre of where it is (its exact
    position, else its zone's centroid, else the site's location) when a grid is set; else the
    centroid of its first known zone, else the site's location. Never the exact position."""
    zone_centre = next((places.zones[z] for z in zones if z in places.zones), None)
    if grid_m is not None:
        return snap_to_grid(exact or zone_centre or places.site, grid_m)
    return zone_centre or places.site


def point(position: Position) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [position.lon, position.lat]}


def _pick(allowed: frozenset[str], makers: dict[str, Callable[[], Any]]) -> Shared:
    # Only the allowed fields' values are computed.
    return {name: make() for name, make in makers.items() if name in allowed}


def project_incident(facts: IncidentFacts, policy: SharingPolicy, places: SitePlaces) -> Shared | None:
    """The incident change as the policy lets it leave; None when nothing of it may."""
    allowed = policy.allowed(Kind.INCIDENT)
    if not allowed:
        return None
    full = policy.level is Level.FULL

    def location() -> dict[str, Any]:
        if full and facts.position is not None:
            return point(facts.position)
        return point(coarse_position(facts.position, facts.zones, places, policy.grid_m))

    def resolved_at() -> str | None:
        return rfc3339(facts.at) if facts.status in ("resolved", "closed") else None

    return _pick(
        allowed,
        {
            "id": lambda: facts.incident_id,
            "type": lambda: facts.type,
            "status": lambda: facts.status,
            "severity": lambda: facts.severity,
            "urgency": lambda: facts.urgency,
            "certainty": lambda: facts.certainty,
            "confirmed": lambda: facts.confirmed,
            "change": lambda: facts.change,
            "opened_at": lambda: rfc3339(facts.opened_at),
            "updated_at": lambda: rfc3339(facts.at),
            "resolved_at": resolved_at,
            "zones": lambda: list(facts.zones),
            "location": location,
            "title": lambda: facts.title,
            "members": lambda: [
                {
                    "alarm_id": m.alarm_id,
                    "device": m.device,
                    "rule": m.rule,
                    "kind": m.kind,
                    "zone": m.zone,
                    "alarm_class": m.alarm_class,
                    "priority": m.priority,
                    "active": m.active,
                    "snapshot": m.snapshot or None,
                }
                for m in facts.members[:MEMBERS_CARRIED]
            ],
            "actions": lambda: list(facts.actions),
            "assignee": lambda: facts.assignee,
            "resolution_code": lambda: facts.resolution_code,
            "resolution_note": lambda: facts.resolution_note,
            "counts": lambda: dict(facts.counts),
            "note": lambda: {"what": facts.what, "text": facts.note, "by": facts.actor},
            "snapshots": lambda: shared_snapshots(facts.tenant, facts.site, facts.snapshots, full=full),
        },
    )


def shared_snapshots(tenant: str, site: str, snapshots: Sequence[str], *, full: bool) -> list[str]:
    """The references that leave: `full` the tenant's own; below it the blurred copies' subjects
    only, of the detections the hub holds a blurred copy of. At most MEMBERS_CARRIED."""
    if full:
        return list(snapshots[:MEMBERS_CARRIED])
    out: list[str] = []
    for snapshot in snapshots:
        copy = blurred(tenant, site, snapshot)
        if copy is not None and copy.subject not in out:
            out.append(copy.subject)
            if len(out) == MEMBERS_CARRIED:
                break
    return out


def shared_snapshot(tenant: str, site: str, snapshot: str, *, full: bool) -> str | None:
    """One alarm's reference as it leaves (see shared_snapshots); None when none does."""
    if full:
        return snapshot or None
    copy = blurred(tenant, site, snapshot)
    return None if copy is None else copy.subject


def project_alarm(facts: AlarmFacts, policy: SharingPolicy, places: SitePlaces) -> Shared | None:
    """The alarm transition as the policy lets it leave; None when nothing of it may.

    Below `full` its id is the transition's event id, not the alarm's: an alarm id is
    `<device>--<rule>`, and a stable digest of it could be matched against guessed tag names."""
    allowed = policy.allowed(Kind.ALARM)
    if not allowed:
        return None
    full = policy.level is Level.FULL
    zones = (facts.zone,) if facts.zone else ()

    def location() -> dict[str, Any]:
        if full and facts.position is not None:
            return point(facts.position)
        return point(coarse_position(facts.position, zones, places, policy.grid_m))

    return _pick(
        allowed,
        {
            "id": lambda: facts.alarm_id if full else facts.event_id,
            "zone": lambda: facts.zone,
            "condition": lambda: facts.condition,
            "alarm_class": lambda: facts.alarm_class,
            "priority": lambda: facts.priority,
            "state": lambda: facts.state,
            "active": lambda: facts.active,
            "time": lambda: rfc3339(facts.at),
            "location": location,
            "device": lambda: facts.device,
            "rule": lambda: facts.rule,
            "kind": lambda: facts.kind,
            "rationale": lambda: facts.rationale,
            "actor": lambda: facts.actor,
            "snapshot": lambda: shared_snapshot(facts.tenant, facts.site, facts.snapshot, full=full),
        },
    )


def hour_of(at: datetime) -> datetime:
    """The UTC hour an event is counted in."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hour_closes(hour: datetime, grace: timedelta) -> datetime:
    """When an hour's counts are published: its end, plus a grace for late messages."""
    return hour + timedelta(hours=1) + grace


def project_counts(
    zone: str, hour: datetime, incidents: int, alarms: int, policy: SharingPolicy
) -> Shared | None:
    """One zone's counts of one hour as the policy lets them leave."""
    allowed = policy.allowed(Kind.KPI)
    if not allowed:
        return None
    return _pick(
        allowed,
        {
            "zone": lambda: zone,
            "hour": lambda: rfc3339(hour),
            "incidents": lambda: incidents,
            "alarms": lambda: alarms,
        },
    )


def release_at(at: datetime, policy: SharingPolicy) -> datetime:
    """When an event of time `at` may leave under the policy's delay."""
    return at + timedelta(seconds=policy.delay_s)


def counted(policy: SharingPolicy) -> bool:
    """Whether the site's events are counted for the hourly KPIs (every level from `counts` up:
    a city that receives each incident also receives the same counts as every other site)."""
    return policy.shares(Kind.KPI)
