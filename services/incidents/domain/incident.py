"""An incident's fused state: its members, and what its severity and certainty follow from them.
Pure; msgspec Structs so the service stores a site's open incidents as one JSON document."""

from __future__ import annotations

from datetime import datetime

import msgspec

from services.alarms.domain.model import AlarmClass, Priority
from services.incidents.domain.model import (
    SEVERITY_OF_PRIORITY,
    Certainty,
    IncidentType,
    Severity,
    Signal,
    Status,
    Text,
    Urgency,
    seen_by_camera,
)
from services.incidents.domain.rules import FusionRule, kind_matches


class Member(msgspec.Struct, kw_only=True):
    """One alarm in an incident: when it joined and whether it is still active."""

    signal_id: str
    alarm_id: str
    device: str
    rule: str
    kind: str | None
    zone: str | None
    position: tuple[float, float] | None
    alarm_class: AlarmClass
    priority: Priority
    at: datetime
    active: bool = True
    confirmed: bool = False
    returned_at: datetime | None = None
    # The snapshot reference of the detection that last raised its alarm; empty when none. Stored
    # in the incident's JSON body: a body written before it reads back as empty.
    snapshot: str = ""

    @classmethod
    def of(cls, signal: Signal) -> Member:
        return cls(
            signal_id=signal.id,
            alarm_id=signal.alarm_id,
            device=signal.device,
            rule=signal.rule,
            kind=signal.kind,
            zone=signal.zone,
            position=signal.position,
            alarm_class=signal.alarm_class,
            priority=signal.priority,
            at=signal.at,
            confirmed=signal.confirmed,
            snapshot=signal.snapshot,
        )


class Incident(msgspec.Struct, kw_only=True):
    id: str
    tenant: str
    site: str
    type: IncidentType
    rule: int  # index of its fusion rule in the rule list; -1 for a flood
    status: Status
    opened_at: datetime
    last_at: datetime  # the latest member's time: the window runs from here
    updated_at: datetime  # the last change's time
    severity: Severity = Severity.UNKNOWN
    urgency: Urgency = Urgency.UNKNOWN
    certainty: Certainty = Certainty.UNKNOWN
    confirmed: bool = False
    members: list[Member] = msgspec.field(default_factory=list)
    actions: list[Text] = msgspec.field(default_factory=list)
    # alarm_flood only: activations counted by class and by priority (members hold the first-out
    # order; `counts` keep counting past the member cap).
    counts: dict[str, int] = msgspec.field(default_factory=dict)
    correlation_id: str = ""
    # What people did: who has it, how it ended; `version` rises with every change (the ETag).
    assignee: str = ""
    resolution_code: str = ""
    resolution_note: str = ""
    version: int = 0

    @property
    def zones(self) -> list[str]:
        seen: dict[str, None] = {}
        for member in self.members:
            if member.zone is not None:
                seen.setdefault(member.zone)
        return list(seen)

    @property
    def position(self) -> tuple[float, float] | None:
        """The first member's position: where it began."""
        for member in sorted(self.members, key=lambda m: (m.at, m.signal_id)):
            if member.position is not None:
                return member.position
        return None

    @property
    def is_live(self) -> bool:
        return self.status in (Status.OPEN, Status.ACKNOWLEDGED, Status.DISPATCHED)

    def first_out(self) -> list[Member]:
        """Members in the order their alarms came: the first-out ranking of a flood."""
        return sorted(self.members, key=lambda m: (m.at, m.signal_id))

    def assess(self, rule: FusionRule | None) -> None:
        """Severity, urgency and certainty from the members: the worst priority's severity;
        cross-source confirmation makes it Observed and one step more severe."""
        worst = max((SEVERITY_OF_PRIORITY[m.priority] for m in self.members), key=lambda s: s.rank)
        self.confirmed = rule is not None and _confirmed(rule, self.members)
        self.severity = worst.raised() if self.confirmed else worst
        if self.confirmed:
            self.certainty = Certainty.OBSERVED
        elif any(not seen_by_camera(m.kind) for m in self.members):
            self.certainty = Certainty.LIKELY
        else:
            # A camera alone can be fooled (steam, glare): possible until a second principle agrees.
            self.certainty = Certainty.POSSIBLE
        if rule is not None:
            self.urgency = rule.urgency
        elif self.type is IncidentType.ALARM_FLOOD:
            self.urgency = Urgency.IMMEDIATE


def _confirmed(rule: FusionRule, members: list[Member]) -> bool:
    if any(m.confirmed for m in members):
        return True  # a voting group's alarm is itself M of N agreeing
    if not rule.confirm_by:
        return False
    return all(any(kind_matches(p, m.kind) for m in members for p in group) for group in rule.confirm_by)
