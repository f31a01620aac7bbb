"""The sharing policy: what of a site's incidents and alarms may leave for the city, as data.

A plant's data is its owner's; nothing leaves unless the site's policy says so. A policy has a
level, and within the level an optional allow-list of fields per kind of event:

- `none`: nothing leaves (the default of every site without a policy);
- `counts`: incidents and alarms counted per zone and hour, nothing about any one of them;
- `redacted`: per incident its type, severity, status and times, its location coarsened to its
  zone's centroid (or to the centre of a grid cell of `grid_m` metres), no device ids, no process
  values, no names, no free text; per alarm its zone, class, priority and state, under an opaque
  reference instead of its id (an alarm id names its device); detections' snapshots only as
  references to their copies with faces blurred (domain/snapshots.py);
- `full`: everything the hub knows of it, exact position included (snapshots as the tenant's
  own references).

`delay_s` holds each event back that long before it leaves (a plant may want to call the fire
brigade itself before the city's screens show the fire).

Every name a policy may use is a `Literal` below, so msgspec refuses an unknown level or field
with its path (`$.fields.incident[2]`), in a config file (file, line and key) and in a request
(422 naming the field) alike.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Annotated, Literal, get_args

import msgspec
from msgspec import Meta


class Level(enum.StrEnum):
    NONE = "none"
    COUNTS = "counts"
    REDACTED = "redacted"
    FULL = "full"


class Kind(enum.StrEnum):
    """What a FEED event is about: its subject's last token."""

    INCIDENT = "incident"
    ALARM = "alarm"
    KPI = "kpi"


IncidentField = Literal[
    "id",
    "type",
    "status",
    "severity",
    "urgency",
    "certainty",
    "confirmed",
    "change",
    "opened_at",
    "updated_at",
    "resolved_at",
    "zones",
    "location",
    "title",
    "members",
    "actions",
    "assignee",
    "resolution_code",
    "resolution_note",
    "counts",
    "note",
    "snapshots",
]
AlarmField = Literal[
    "id",
    "zone",
    "condition",
    "alarm_class",
    "priority",
    "state",
    "active",
    "time",
    "location",
    "device",
    "rule",
    "kind",
    "rationale",
    "actor",
    "snapshot",
]
KpiField = Literal["zone", "hour", "incidents", "alarms"]

INCIDENT_FIELDS: frozenset[str] = frozenset(get_args(IncidentField))
ALARM_FIELDS: frozenset[str] = frozenset(get_args(AlarmField))
KPI_FIELDS: frozenset[str] = frozenset(get_args(KpiField))

# What each level lets leave, per kind. `redacted` is the list of the issue: type, severity,
# status, times, coarse location; urgency, certainty and zone ids are codes of a fixed set (no
# name, no free text, no value), so they go with them. Snapshots leave as references to their
# copies with faces blurred only (domain/snapshots.py). Everything else (device ids, rules, titles
# and actions that name equipment, assignees, notes, exact positions) is `full` only.
_REDACTED: Mapping[Kind, frozenset[str]] = {
    Kind.INCIDENT: frozenset(
        {
            "id",
            "type",
            "status",
            "severity",
            "urgency",
            "certainty",
            "confirmed",
            "change",
            "opened_at",
            "updated_at",
            "resolved_at",
            "zones",
            "location",
            "snapshots",
        }
    ),
    Kind.ALARM: frozenset(
        {
            "id",
            "zone",
            "condition",
            "alarm_class",
            "priority",
            "state",
            "active",
            "time",
            "location",
            "snapshot",
        }
    ),
    Kind.KPI: KPI_FIELDS,
}
_FULL: Mapping[Kind, frozenset[str]] = {
    Kind.INCIDENT: INCIDENT_FIELDS,
    Kind.ALARM: ALARM_FIELDS,
    Kind.KPI: KPI_FIELDS,
}
_COUNTS: Mapping[Kind, frozenset[str]] = {
    Kind.INCIDENT: frozenset(),
    Kind.ALARM: frozenset(),
    Kind.KPI: KPI_FIELDS,
}
_NOTHING: Mapping[Kind, frozenset[str]] = {kind: frozenset() for kind in Kind}
LEVEL_FIELDS: Mapping[Level, Mapping[Kind, frozenset[str]]] = {
    Level.NONE: _NOTHING,
    Level.COUNTS: _COUNTS,
    Level.REDACTED: _REDACTED,
    Level.FULL: _FULL,
}
# A shared incident or alarm always carries its id (opaque for alarms): without it the city can
# neither update what it holds nor tell a repeat from a new event.
ALWAYS: frozenset[str] = frozenset({"id"})

GridMetres = Annotated[float, Meta(gt=0, le=100_000)]
DelaySeconds = Annotated[float, Meta(ge=0, le=7 * 24 * 3600)]


class AllowList(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Fields that may leave, per kind, within what the level lets leave; unset: all of them."""

    incident: tuple[IncidentField, ...] | None = None
    alarm: tuple[AlarmField, ...] | None = None
    kpi: tuple[KpiField, ...] | None = None

    def of(self, kind: Kind) -> frozenset[str] | None:
        chosen: tuple[str, ...] | None = getattr(self, str(kind))
        return None if chosen is None else frozenset(chosen)


class SharingPolicy(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A site's policy as written (YAML or the API's body)."""

    level: Level = Level.NONE
    fields: AllowList = msgspec.field(default_factory=AllowList)
    # Locations snap to the centre of a square cell this many metres wide; unset: the centroid of
    # the incident's (first) zone, or the site's location when it has none.
    grid_m: GridMetres | None = None
    delay_s: DelaySeconds = 0.0

    def allowed(self, kind: Kind) -> frozenset[str]:
        """The fields of a `kind` event that may leave under this policy."""
        by_level = LEVEL_FIELDS[self.level][kind]
        chosen = self.fields.of(kind)
        if chosen is None or not by_level:
            return by_level
        return by_level & (chosen | (ALWAYS if kind is not Kind.KPI else frozenset()))

    def shares(self, kind: Kind) -> bool:
        return bool(self.allowed(kind))


NO_SHARING = SharingPolicy()


class PolicyInForce(msgspec.Struct, frozen=True, kw_only=True):
    """A site's policy with the version that made it so (0: no policy was ever set)."""

    tenant: str
    site: str
    version: int
    policy: SharingPolicy


def no_policy(tenant: str, site: str) -> PolicyInForce:
    return PolicyInForce(tenant=tenant, site=site, version=0, policy=NO_SHARING)


def tightens(old: SharingPolicy, new: SharingPolicy) -> bool:
    """Whether `new` lets less leave than `old` for some kind (what the audit row says)."""
    return any(not new.allowed(kind) >= old.allowed(kind) for kind in Kind)
