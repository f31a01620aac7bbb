"""Fusion: alarm activations and returns, and flood edges, into incidents. Pure; time is the
inputs' own.

`Fusion.apply(state, inputs)` applies inputs to one site's state (its live incidents, the alarms
waiting for an `all` rule, the flood in progress) in time order and returns the changes made,
each one a timeline entry and a message for the service to commit. A redelivered alarm (a
signal id already among the members) changes nothing.

Floods: while the alarm engine says a site floods, non-safety alarms join one alarm_flood
incident that counts them and keeps their first-out order; safety-class alarms still open or join
their own incidents, always. When the flood begins, the non-safety incidents opened in the flood
window and not yet taken by anyone fold into it, so one upset is one incident.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from services.alarms.domain.model import AlarmClass
from services.common.contracts.ids import derived_id
from services.incidents.domain.incident import Incident, Member
from services.incidents.domain.model import IncidentType, Signal, Status, Text
from services.incidents.domain.rules import FusionRule, kind_matches

EARTH_RADIUS_M = 6_371_008.8
# A flood incident lists this many alarms in first-out order and counts the rest.
FLOOD_MEMBER_CAP = 500


class FloodSignal(msgspec.Struct, frozen=True, kw_only=True):
    """The alarm engine's flood edge at a site."""

    id: str
    tenant: str
    site: str
    began: bool
    at: datetime
    since: datetime
    window: timedelta = timedelta(minutes=10)
    activations: int = 0
    correlation_id: str = ""


class SiteState(msgspec.Struct, kw_only=True):
    """What fusion knows of one site between batches."""

    incidents: list[Incident] = msgspec.field(default_factory=list)  # the live ones
    pending: list[Signal] = msgspec.field(default_factory=list)  # waiting for an `all` rule
    # The site's latest flood: in progress while `flood_until` is None. Kept after its end, so an
    # alarm of the flood's time that reaches fusion after the end edge is still counted in it
    # (alarms and flood edges come through two consumers, in either order).
    flood_id: str | None = None
    flood_since: datetime | None = None
    flood_until: datetime | None = None


class ChangeKind(enum.StrEnum):
    OPENED = "opened"
    JOINED = "joined"  # an alarm joined (or became active again in) the incident
    RAISED = "raised"  # severity or certainty changed with a member
    RETURNED = "returned"  # a member's alarm returned to normal
    RESOLVED = "resolved"  # by its resolve-on rule, or the flood's end
    MERGED = "merged"  # folded into the flood incident, now closed


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    incident_id: str
    at: datetime
    cause: str  # the signal id (or flood id) that caused it: the change's identity
    what: str  # for people: what happened and why
    alarm_id: str | None = None
    into: str | None = None  # MERGED: the flood incident

    @property
    def id(self) -> str:
        return derived_id(int(self.at.timestamp() * 1000), self.incident_id, self.kind, self.cause)


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two WGS 84 points (haversine), in metres."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


class Fusion:
    def __init__(self, rules: Sequence[FusionRule]) -> None:
        self.rules = tuple(rules)

    def rule_of(self, incident: Incident) -> FusionRule | None:
        return self.rules[incident.rule] if 0 <= incident.rule < len(self.rules) else None

    def apply(self, state: SiteState, inputs: Iterable[Signal | FloodSignal]) -> list[Change]:
        changes: list[Change] = []
        # Time order, whatever the arrival order within the batch.
        for item in sorted(inputs, key=lambda s: (s.at, s.id)):
            if isinstance(item, FloodSignal):
                changes += self._flood(state, item)
            elif self._seen(state, item):
                continue
            elif item.active:
                changes += self._activation(state, item)
            else:
                changes += self._return(state, item)
        return changes

    # ------------------------------------------------------------------ alarms

    @staticmethod
    def _seen(state: SiteState, signal: Signal) -> bool:
        return any(m.signal_id == signal.id for i in state.incidents for m in i.members) or any(
            p.id == signal.id for p in state.pending
        )

    def _activation(self, state: SiteState, signal: Signal) -> list[Change]:
        flood = self._flood_incident(state)
        # Safety-class alarms always open or join their own incidents, flood or not.
        if flood is not None and _in_flood(state, signal.at) and signal.alarm_class is not AlarmClass.SAFETY:
            return self._join_flood(flood, signal)
        for index, rule in enumerate(self.rules):
            if not rule.accepts(signal):
                continue
            for incident in state.incidents:
                if incident.rule == index and incident.is_live and self._near(rule, incident, signal):
                    return self._join(rule, incident, signal)
        for index, rule in enumerate(self.rules):
            if rule.may_open(signal):
                return self._open(state, index, rule, signal)
        return []

    def _near(self, rule: FusionRule, incident: Incident, signal: Signal) -> bool:
        if not incident.opened_at - rule.window <= signal.at <= incident.last_at + rule.window:
            return False
        return any(
            self._close(rule, member.device, member.zone, member.position, signal)
            for member in incident.members
        )

    @staticmethod
    def _close(
        rule: FusionRule, device: str, zone: str | None, position: tuple[float, float] | None, signal: Signal
    ) -> bool:
        if device == signal.device or (zone is not None and zone == signal.zone):
            return True
        return (
            rule.radius_m > 0
            and position is not None
            and signal.position is not None
            and distance_m(position, signal.position) <= rule.radius_m
        )

    def _join(self, rule: FusionRule, incident: Incident, signal: Signal) -> list[Change]:
        before = (incident.severity, incident.certainty)
        member = next((m for m in incident.members if m.alarm_id == signal.alarm_id), None)
        if member is None:
            incident.members.append(Member.of(signal))
            what = f"alarm {signal.alarm_id} joined"
        else:
            member.signal_id, member.active, member.returned_at = signal.id, True, None
            member.priority = max(member.priority, signal.priority, key=_priority_rank)
            # Raised again by a new detection: its picture is the one to see now.
            member.snapshot = signal.snapshot or member.snapshot
            what = f"alarm {signal.alarm_id} active again"
        incident.last_at = max(incident.last_at, signal.at)
        incident.opened_at = min(incident.opened_at, signal.at)
        _add_action(incident, signal.action)
        incident.assess(rule)
        changes = [
            Change(ChangeKind.JOINED, incident.id, signal.at, signal.id, what, alarm_id=signal.alarm_id)
        ]
        after = (incident.severity, incident.certainty)
        if after != before:
            why = "confirmed by a second source" if incident.confirmed else "a more severe alarm joined"
            changes.append(
                Change(
                    ChangeKind.RAISED,
                    incident.id,
                    signal.at,
                    signal.id,
                    f"severity {before[0]} -> {after[0]}, certainty {before[1]} -> {after[1]}: {why}",
                    alarm_id=signal.alarm_id,
                )
            )
        return changes

    def _open(self, state: SiteState, index: int, rule: FusionRule, signal: Signal) -> list[Change]:
        founders = [signal]
        if rule.create_on == "all":
            state.pending = [
                p
                for p in state.pending
                if p.at >= signal.at - rule.window and p.at <= signal.at + rule.window
            ]
            state.pending.append(signal)
            founders = [
                p for p in state.pending if rule.may_open(p) and (p is signal or self._pair(rule, p, signal))
            ]
            if not all(any(kind_matches(g, p.kind) for p in founders) for g in rule.opening_groups()):
                return []
            state.pending = [p for p in state.pending if p not in founders]
        first = min(founders, key=lambda s: (s.at, s.id))
        incident = Incident(
            id=derived_id(int(first.at.timestamp() * 1000), first.tenant, first.site, rule.type, first.id),
            tenant=first.tenant,
            site=first.site,
            type=rule.type,
            rule=index,
            status=Status.OPEN,
            opened_at=first.at,
            last_at=max(s.at for s in founders),
            updated_at=signal.at,
            actions=list(rule.actions),
            correlation_id=first.correlation_id,
        )
        for founder in sorted(founders, key=lambda s: (s.at, s.id)):
            incident.members.append(Member.of(founder))
            _add_action(incident, founder.action)
        incident.assess(rule)
        state.incidents.append(incident)
        what = f"{rule.type} opened by alarm {first.alarm_id}"
        changes = [Change(ChangeKind.OPENED, incident.id, first.at, first.id, what, alarm_id=first.alarm_id)]
        changes += [
            Change(
                ChangeKind.JOINED, incident.id, s.at, s.id, f"alarm {s.alarm_id} joined", alarm_id=s.alarm_id
            )
            for s in founders
            if s is not first
        ]
        return changes

    def _pair(self, rule: FusionRule, a: Signal, b: Signal) -> bool:
        return abs(a.at - b.at) <= rule.window and self._close(rule, a.device, a.zone, a.position, b)

    def _return(self, state: SiteState, signal: Signal) -> list[Change]:
        state.pending = [p for p in state.pending if p.alarm_id != signal.alarm_id]
        changes: list[Change] = []
        for incident in state.incidents:
            member = next((m for m in incident.members if m.alarm_id == signal.alarm_id and m.active), None)
            if member is None or not incident.is_live:
                continue
            member.active, member.returned_at = False, signal.at
            what = f"alarm {signal.alarm_id} returned to normal"
            changes.append(
                Change(ChangeKind.RETURNED, incident.id, signal.at, signal.id, what, alarm_id=signal.alarm_id)
            )
            rule = self.rule_of(incident)
            if rule is not None and _resolves(rule, incident, member):
                incident.status = Status.RESOLVED
                why = f"resolved: its alarms returned to normal (resolve on {rule.resolve_on})"
                changes.append(Change(ChangeKind.RESOLVED, incident.id, signal.at, signal.id, why))
        return changes

    # ------------------------------------------------------------------ floods

    @staticmethod
    def _flood_incident(state: SiteState) -> Incident | None:
        return next((i for i in state.incidents if i.id == state.flood_id), None)

    def _flood(self, state: SiteState, edge: FloodSignal) -> list[Change]:
        if edge.began:
            return self._flood_began(state, edge)
        flood = self._flood_incident(state)
        if flood is None or state.flood_since != edge.since or state.flood_until is not None:
            return []
        state.flood_until = edge.at
        if not flood.is_live:
            return []  # a person resolved it already
        flood.status = Status.RESOLVED
        what = f"flood ended after {edge.activations} activations"
        return [Change(ChangeKind.RESOLVED, flood.id, edge.at, edge.id, what)]

    def _flood_began(self, state: SiteState, edge: FloodSignal) -> list[Change]:
        if state.flood_since == edge.since and self._flood_incident(state) is not None:
            return []
        state.flood_until = None
        flood = Incident(
            id=derived_id(
                int(edge.since.timestamp() * 1000), edge.tenant, edge.site, IncidentType.ALARM_FLOOD
            ),
            tenant=edge.tenant,
            site=edge.site,
            type=IncidentType.ALARM_FLOOD,
            rule=-1,
            status=Status.OPEN,
            opened_at=edge.since,
            last_at=edge.at,
            updated_at=edge.at,
            actions=[
                Text(
                    ko="첫 경보(first-out)부터 원인 확인, 안전 경보 우선 대응",
                    en="Work from the first-out alarm; answer safety alarms first",
                )
            ],
            correlation_id=edge.correlation_id,
        )
        state.flood_id, state.flood_since = flood.id, edge.since
        changes = [Change(ChangeKind.OPENED, flood.id, edge.at, edge.id, "alarm flood began")]
        for incident in list(state.incidents):
            if (
                incident.status is Status.OPEN
                and incident.type is not IncidentType.ALARM_FLOOD
                and incident.opened_at >= edge.at - edge.window
                and all(m.alarm_class is not AlarmClass.SAFETY for m in incident.members)
            ):
                incident.status = Status.CLOSED
                what = f"folded into the alarm flood {flood.id}"
                changes.append(Change(ChangeKind.MERGED, incident.id, edge.at, edge.id, what, into=flood.id))
                for member in incident.members:
                    _count(flood, member)
                    # The flood's timeline reads the same whichever came first, the edge or the alarm.
                    joined = f"alarm {member.alarm_id} joined the flood (from incident {incident.id})"
                    changes.append(
                        Change(
                            ChangeKind.JOINED,
                            flood.id,
                            member.at,
                            member.signal_id,
                            joined,
                            alarm_id=member.alarm_id,
                        )
                    )
        state.incidents.append(flood)
        flood.opened_at = min([edge.since, *(m.at for m in flood.members)])
        if flood.members:
            flood.assess(None)
        return changes

    def _join_flood(self, flood: Incident, signal: Signal) -> list[Change]:
        before = (flood.severity, flood.certainty)
        _count(flood, Member.of(signal))
        flood.last_at = max(flood.last_at, signal.at)
        flood.assess(None)
        changes = [
            Change(
                ChangeKind.JOINED,
                flood.id,
                signal.at,
                signal.id,
                f"alarm {signal.alarm_id} joined the flood",
                alarm_id=signal.alarm_id,
            )
        ]
        if (flood.severity, flood.certainty) != before:
            what = f"severity {before[0]} -> {flood.severity}"
            changes.append(
                Change(ChangeKind.RAISED, flood.id, signal.at, signal.id, what, alarm_id=signal.alarm_id)
            )
        return changes


def _in_flood(state: SiteState, at: datetime) -> bool:
    since, until = state.flood_since, state.flood_until
    return since is not None and since <= at and (until is None or at <= until)


def _count(flood: Incident, member: Member) -> None:
    flood.counts["total"] = flood.counts.get("total", 0) + 1
    for key in (f"class.{member.alarm_class}", f"priority.{member.priority}"):
        flood.counts[key] = flood.counts.get(key, 0) + 1
    if len(flood.members) < FLOOD_MEMBER_CAP:
        flood.members.append(member)


def _resolves(rule: FusionRule, incident: Incident, returned: Member) -> bool:
    match rule.resolve_on:
        case "first":
            return True
        case "last":
            return returned is max(incident.members, key=lambda m: (m.at, m.signal_id))
        case "all":
            return not any(m.active for m in incident.members)
        case _:
            return False


def _add_action(incident: Incident, action: Text | None) -> None:
    if action is not None and action not in incident.actions:
        incident.actions.append(action)


_PRIORITIES = ("low", "medium", "high", "emergency")


def _priority_rank(priority: str) -> int:
    return _PRIORITIES.index(priority)
