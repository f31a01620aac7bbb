"""The pure alarm domain run over a simulator's readings: what alarms a user of one site would see.

Every (device, kind) of the site gets the rules that resolve for it; each reading goes through
the condition evaluation (evaluate.py), each condition change through the state machine
(state.py), and the transitions through the quality detectors (chattering per point, flood per
site) as the engine does. Timers (on- and off-delays, stale) fire at each tick when due. Voting
groups are asked with `verdict`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from services.alarms.domain import evaluate, quality, state
from services.alarms.domain.actions import Activate, Clear
from services.alarms.domain.facts import facts
from services.alarms.domain.model import ConditionType, PointId, Rule, Transition
from services.alarms.domain.rules import DeviceRef, RuleSet, VotingGroup
from services.alarms.domain.voting import Member, Verdict, vote
from services.common.sites.registry import SiteRegistry
from services.simulator.plant import Reading

_QUALITY = {
    "good": evaluate.Quality.GOOD,
    "uncertain": evaluate.Quality.UNCERTAIN,
    "bad": evaluate.Quality.BAD,
}


@dataclass
class _Point:
    rule: Rule
    condition: evaluate.ConditionState
    alarm: state.PointState
    chatter: quality.ChatterState = field(default_factory=quality.ChatterState)


@dataclass
class AlarmReplay:
    registry: SiteRegistry
    rules: RuleSet
    site_id: str
    start: datetime
    transitions: list[Transition] = field(default_factory=list)
    activations: list[Transition] = field(default_factory=list)
    chattering: set[str] = field(default_factory=set)  # alarm ids flagged at some point
    floods: list[quality.FloodEvent] = field(default_factory=list)
    _points: dict[tuple[str, str], list[_Point]] = field(default_factory=dict)
    _flood: quality.FloodState = field(default_factory=quality.FloodState)

    def __post_init__(self) -> None:
        site = self.registry.site(self.site_id)
        assert site is not None
        for device in site.devices:
            ref = DeviceRef(site.id, device.zone, device.type, device.id)
            for measure in device.measures:
                self._points[(device.id, measure.kind)] = [
                    _Point(
                        rule,
                        evaluate.initial(rule, self.start),
                        state.PointState(PointId(site.tenant, site.id, device.id, rule.id)),
                    )
                    for rule in self.rules.resolve(ref, measure.kind)
                ]

    def feed(self, now: datetime, readings: Iterable[Reading]) -> None:
        """One tick: the timers due by `now`, then the tick's readings (all dated `now`)."""
        for points in self._points.values():
            for point in points:
                point.condition, changes = evaluate.on_timer(point.rule, point.condition, now)
                self._changed(point, changes)
        for reading in readings:
            sample = evaluate.Sample(
                id=f"{reading['device']}:{reading['kind']}:{reading['time']}",
                at=datetime.fromisoformat(str(reading["time"])),
                value=reading.get("value"),  # type: ignore[arg-type]
                confidence=reading.get("confidence"),  # type: ignore[arg-type]
                quality=_QUALITY[str(reading["quality"])],
            )
            for point in self._points.get((str(reading["device"]), str(reading["kind"])), []):
                point.condition, changes = evaluate.apply(point.rule, point.condition, sample)
                self._changed(point, changes)

    def _changed(self, point: _Point, changes: tuple[evaluate.Change, ...]) -> None:
        for change in changes:
            event: Activate | Clear
            if change.active:
                event = Activate(change.at, change.observation_ids, change.timer)
            else:
                event = Clear(change.at, change.observation_ids, change.timer, latching=point.rule.latching)
            before = point.alarm
            point.alarm, caused = state.apply(before, event)
            for transition in caused:
                self.transitions.append(transition)
                point.chatter, chattering = quality.record_transition(point.chatter, transition.at)
                if chattering:
                    self.chattering.add(transition.point.alarm_id)
                if facts(before, transition).activation:
                    self.activations.append(transition)
                    self._flood, events = quality.record_activation(self._flood, transition.at)
                    self.floods.extend(events)
                before = point.alarm

    def active(self, device: str, rule_id: str) -> bool:
        """Whether the condition of the point (device, rule) is active now."""
        return any(p.condition.active for p in self._of(device, rule_id) if p.rule.id == rule_id)

    def _of(self, device: str, rule_id: str) -> list[_Point]:
        """The points of the (device, kind) that `rule_id` watches on `device`."""
        for (dev, _), points in self._points.items():
            if dev == device and any(p.rule.id == rule_id for p in points):
                return points
        return []

    def verdict(self, group: VotingGroup) -> Verdict:
        """The group's vote from its members' points as they are now: a member is faulty or
        stale when the fault or stale alarm of the kind its rule watches is active."""
        members: dict[str, Member] = {}
        for member in group.members:
            rule = member.rule or ""
            points = self._of(member.device, rule)
            members[member.device] = Member.of(
                active=self.active(member.device, rule),
                faulty=any(
                    p.condition.active for p in points if p.rule.condition is ConditionType.BAD_QUALITY
                ),
                stale=any(p.condition.active for p in points if p.rule.condition is ConditionType.STALE),
            )
        return vote(group, members)

    def activated(self) -> set[str]:
        """The alarm ids that were activated (went UNACK anew) at least once."""
        return {t.point.alarm_id for t in self.activations}
