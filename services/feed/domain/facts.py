"""What the feed knows of an incident change or an alarm transition before a policy looks at it.

Plain frozen data read from the INCIDENTS and ALARMS messages (adapters/read.py), so projecting
is pure and tested without protobuf or servers. Everything here is the plant's; only a
projection (projection.py) of it leaves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Position:
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Member:
    alarm_id: str
    device: str
    rule: str
    kind: str
    zone: str
    alarm_class: str
    priority: str
    active: bool
    snapshot: str = ""  # the tenant's reference of the detection that raised it; empty when none


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentFacts:
    """One change of one incident, and the incident after it."""

    event_id: str  # the change's id (its timeline entry's): the FEED event is derived from it
    tenant: str
    site: str
    incident_id: str
    change: str
    at: datetime
    type: str
    status: str
    severity: str
    urgency: str
    certainty: str
    confirmed: bool
    opened_at: datetime
    zones: tuple[str, ...] = ()
    position: Position | None = None
    title: str = ""
    # In the order they joined (first-out first). A flood holds up to hundreds: read lazily from
    # the message (adapters/read.py), so a policy that does not share them never builds them.
    members: Sequence[Member] = ()
    actions: tuple[str, ...] = ()
    assignee: str = ""
    resolution_code: str = ""
    resolution_note: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    # The change's own words: what happened and the person's note.
    what: str = ""
    note: str = ""
    actor: str = ""
    # The carried members' snapshot references (the tenant's), in the order they joined, each
    # once; read lazily from the message like the members (adapters/read.py).
    snapshots: Sequence[str] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AlarmFacts:
    """One transition of one alarm."""

    event_id: str
    tenant: str
    site: str
    alarm_id: str
    device: str
    rule: str
    kind: str  # the measured kind, when the site registry knows the device
    zone: str  # the device's zone, when the site registry knows the device
    condition: str
    alarm_class: str
    priority: str
    state: str
    active: bool
    at: datetime
    raised: bool  # a transition into an active unacknowledged state: what counts count
    position: Position | None = None
    rationale: str = ""
    actor: str = ""  # who acted, for an operator's transition
    snapshot: str = ""  # the tenant's reference of the detection that raised it; empty when none


@dataclass(frozen=True, slots=True)
class SitePlaces:
    """Where a site's zones are: what a `redacted` location is coarsened to."""

    site: Position
    zones: dict[str, Position] = field(default_factory=dict)
