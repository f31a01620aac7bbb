"""The alarm engine of one unit of work: observations, timers and operator requests in; the
transitions, flood edges and changed points out. Pure: no I/O, no clock.

The caller loads the points a batch touches into a `Workset` (`Engine.keys_for` says which),
calls `observe`, `tick` or `act`, then writes back what the workset marks as changed and publishes
the outcome. Every step below is one of the pure modules':
- evaluate.py decides whether a point's condition is active (set-points, delays, stale, detection);
- state.py turns condition changes, timers and requests into ISA-18.2 transitions;
- quality.py flags chattering and fleeting alarms and tracks floods per site;
- voting.py confirms a group alarm when M of its N members are in alarm.

Determinism: observations are applied in (time, id) order and every timer fires dated at its due
time, never at the wall clock, so the same observations yield the same transitions with the same
ids however the bus redelivers them (evaluate.py and state.py ignore late and repeated ones).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

import msgspec

from services.alarms.adapters.messages import AlarmView
from services.alarms.adapters.wire import CHATTERING, FLEETING
from services.alarms.domain import evaluate, site_floods
from services.alarms.domain import state as machine
from services.alarms.domain.actions import Activate, Clear, Event, Request, ShelveKind, TimerDue
from services.alarms.domain.evaluate import Change, ConditionState, Sample
from services.alarms.domain.facts import facts
from services.alarms.domain.model import (
    AlarmState,
    ConditionType,
    PointId,
    Rule,
)
from services.alarms.domain.quality import (
    is_fleeting,
    next_flood_due,
    record_transition,
)
from services.alarms.domain.rules import RuleSet, VotingGroup, VotingMember
from services.alarms.domain.state import PointState
from services.alarms.domain.voting import Member, vote
from services.alarms.domain.workset import (
    VOTE_RULE,
    DeviceLookup,
    Emitted,
    Handling,
    Observation,
    PointRecord,
    SiteKey,
    Workset,
    is_latched,
)


class Engine:
    """Applies one rule set to worksets. Immutable: a reload builds a new engine."""

    def __init__(self, rules: RuleSet, devices: DeviceLookup) -> None:
        self.rules = rules
        self._devices = devices
        self._ids: dict[tuple[str, str, str, str], PointId] = {}
        self._groups: dict[tuple[str, str], VotingGroup] = {
            (group.site, group.id): group for group in rules.voting_groups
        }

    # ------------------------------------------------------------------ what to load

    def device_points(self, tenant: str, site: str, device: str) -> list[tuple[str, Rule]]:
        """Every (kind, rule) watching the device: one point each."""
        found = self._devices(tenant, site, device)
        if found is None:
            return []
        ref, kinds = found
        return [(kind, rule) for kind in kinds for rule in self.rules.resolve(ref, kind)]

    def keys_for(self, observations: Iterable[Observation]) -> tuple[set[SiteKey], set[PointId]]:
        """The sites and points `observe` may read or change for these observations."""
        sites: set[SiteKey] = set()
        points: set[PointId] = set()
        seen: set[tuple[str, str, str, str]] = set()
        for obs in observations:
            key = (obs.tenant, obs.site, obs.device, obs.kind)
            if key in seen:
                continue
            seen.add(key)
            sites.add((obs.tenant, obs.site))
            found = self._devices(obs.tenant, obs.site, obs.device)
            if found is None:
                continue
            for rule in self.rules.resolve(found[0], obs.kind):
                points.add(self._point_id(obs.tenant, obs.site, obs.device, rule.id))
            points.update(self.group_keys(obs.tenant, obs.site, obs.device))
        return sites, points

    def group_keys(self, tenant: str, site: str, device: str) -> set[PointId]:
        """The points of every voting group the device votes in, and of their members."""
        points: set[PointId] = set()
        for group in self.rules.groups_with(site, device):
            points.add(PointId(tenant, site, group.id, VOTE_RULE))
            for member in group.members:
                for _, rule in self.device_points(tenant, site, member.device):
                    points.add(PointId(tenant, site, member.device, rule.id))
        return points

    def handling(self, point: PointId) -> Handling | None:
        """The point's rule or group as now loaded; None when a reload removed it."""
        if point.rule == VOTE_RULE:
            group = self._groups.get((point.site, point.device))
            return None if group is None else self._group_handling(group)
        rule = self.rules.index.rule(point.rule)
        return None if rule is None else Handling.of_rule(rule)

    def _group_handling(self, group: VotingGroup) -> Handling:
        condition = ConditionType.HIGH
        for member in group.members:
            rule = self.rules.index.rule(member.rule) if member.rule else None
            if rule is not None:
                condition = rule.condition
                break
        return Handling(condition, group.priority, group.alarm_class, group.rationale)

    # ------------------------------------------------------------------ observations

    def observe(self, work: Workset, observations: Iterable[Observation]) -> None:
        """Apply observations in time order (ties by id: the same order on every delivery).

        Points interact only through changes of their conditions (votes, floods) and their timers.
        So the observations of one device and kind that change no condition and meet no due timer
        (most of a plant's readings) are applied point by point, which is the same as in time
        order among the others and saves most of the per-observation bookkeeping; the rest are
        applied in time order, one observation at a time, as they come."""
        groups: dict[tuple[str, str, str, str], list[Observation]] = {}
        for obs in sorted(observations, key=_order):
            key = (obs.tenant, obs.site, obs.device, obs.kind)
            group = groups.get(key)
            if group is None:
                groups[key] = [obs]
            else:
                group.append(obs)
        rest: list[Observation] = []
        for key, group in groups.items():
            if not self._observe_quiet(work, key, group):
                rest.extend(group)
        if rest:
            rest.sort(key=_order)
            self._observe_in_order(work, rest)

    def _observe_quiet(self, work: Workset, key: tuple[str, str, str, str], group: list[Observation]) -> bool:
        """Apply one device and kind's observations (in time order) point by point if none of
        them changes a condition or meets a due timer; False, with nothing applied, otherwise."""
        tenant, site, device, kind = key
        found = self._devices(tenant, site, device)
        rules = () if found is None else self.rules.resolve(found[0], kind)
        if not rules:
            work.unwatched += len(group)
            return True
        points = work.points
        last = group[-1].at
        samples = [Sample(obs.id, obs.at, obs.value, obs.confidence, obs.quality) for obs in group]
        outcome: list[tuple[PointId, PointRecord, ConditionState, bool]] = []
        for rule in rules:
            point = self._point_id(tenant, site, device, rule.id)
            record = points.get(point)
            if record is None or record.condition is None:
                return False  # first known: created in order with the others
            due = record.due
            if due is not None and due <= last:
                return False
            condition = record.condition
            substantive = False
            for sample in samples:
                after, changes = evaluate.apply(rule, condition, sample)
                if changes:
                    return False
                if after is not condition:
                    substantive = substantive or not evaluate.only_progress(condition, after)
                    condition = after
            outcome.append((point, record, condition, substantive))
        for point, record, condition, substantive in outcome:
            if condition is not record.condition:
                points[point] = msgspec.structs.replace(record, condition=condition)
                (work.changed if substantive else work.progressed).add(point)
        work.evaluated += len(group)
        return True

    def _observe_in_order(self, work: Workset, observations: list[Observation]) -> None:
        points, changed, progressed, point_id = work.points, work.changed, work.progressed, self._point_id
        for obs in observations:
            found = self._devices(obs.tenant, obs.site, obs.device)
            rules = () if found is None else self.rules.resolve(found[0], obs.kind)
            if not rules:
                work.unwatched += 1
                continue
            work.evaluated += 1
            at = obs.at
            sample = Sample(obs.id, at, obs.value, obs.confidence, obs.quality)
            for rule in rules:
                point = point_id(obs.tenant, obs.site, obs.device, rule.id)
                record = points.get(point)
                if record is None:
                    # First known: the first observation of its device and kind.
                    record = PointRecord(PointState(point), evaluate.initial(rule, at))
                    points[point] = record
                    changed.add(point)
                due = record.due
                if due is not None and due <= at:
                    self._catch_up(work, point, at)
                    record = points[point]
                before = record.condition
                assert before is not None
                condition, changes = evaluate.apply(rule, before, sample)
                if condition is not before:
                    points[point] = msgspec.structs.replace(record, condition=condition)
                    if evaluate.only_progress(before, condition):
                        progressed.add(point)
                    else:
                        changed.add(point)
                for change in changes:
                    self._condition(work, point, rule, change, obs.snapshot)

    def _point_id(self, tenant: str, site: str, device: str, rule: str) -> PointId:
        # Memoised: building a frozen dataclass costs more than the tuple probe (bounded by the
        # number of points, like the rule index's memo). `keys_for` hands out these instances
        # and the repository keys the workset by them, so a probe of the workset finds its key
        # by identity, without the dataclass's __eq__ written in Python.
        key = (tenant, site, device, rule)
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = PointId(tenant, site, device, rule)
        return found

    # ------------------------------------------------------------------ timers

    def tick(self, work: Workset, now: datetime) -> None:
        """Fire every timer of the workset that fell due by `now`, in due order, dated when due."""
        heap: list[tuple[datetime, int, PointId | SiteKey]] = []
        counter = 0
        for point, record in work.points.items():
            due = record.due
            if due is not None and due <= now:
                heap.append((due, counter, point))
                counter += 1
        for site, flood in work.floods.items():
            due = next_flood_due(flood)
            if due is not None and due <= now:
                heap.append((due, counter, site))
                counter += 1
        heapq.heapify(heap)
        while heap:
            due, _, key = heapq.heappop(heap)
            if isinstance(key, PointId):
                current = work.points[key].due
                if current is None or current > now:
                    continue
                if current != due:
                    heapq.heappush(heap, (current, counter, key))
                    counter += 1
                    continue
                self._fire_point(work, key)
                after = work.points[key].due
                if after is not None and after <= now:
                    heapq.heappush(heap, (after, counter, key))
                    counter += 1
            else:
                site_floods.fire_timer(work, key, now)

    def _catch_up(self, work: Workset, point: PointId, upto: datetime) -> None:
        """Fire the point's timers due by `upto`, before what happens at `upto` is applied."""
        while True:
            due = work.points[point].due
            if due is None or due > upto:
                return
            self._fire_point(work, point)

    def _fire_point(self, work: Workset, point: PointId) -> None:
        record = work.points[point]
        work.timers_fired += 1
        condition_due = record.condition_due
        shelve_due = machine.next_due(record.state)
        if condition_due is not None and (shelve_due is None or condition_due <= shelve_due):
            assert record.condition is not None
            rule = self.rules.index.rule(point.rule)
            if rule is None:
                # Its rule was removed by a reload: the pending change is dropped with it.
                dropped = record.condition._replace(due=None)
                work.put(point, msgspec.structs.replace(record, condition=dropped))
                return
            condition, changes = evaluate.on_timer(rule, record.condition, condition_due)
            work.put(point, msgspec.structs.replace(record, condition=condition))
            for change in changes:
                self._condition(work, point, rule, change)
        elif shelve_due is not None:
            self._state_event(work, point, TimerDue(shelve_due))

    # ------------------------------------------------------------------ people

    def act(self, work: Workset, point: PointId, request: Request) -> list[Emitted]:
        """Apply an operator's request. Raises IllegalAction (409) or InvalidAction (422)."""
        self._catch_up(work, point, request.at)
        before = len(work.emitted)
        self._state_event(work, point, request)
        return work.emitted[before:]

    # ------------------------------------------------------------------ shared

    def _condition(
        self, work: Workset, point: PointId, rule: Rule, change: Change, snapshot: str = ""
    ) -> None:
        """Apply a change of the point's condition; `snapshot` is that of the observation that
        decided it (empty when a timer did, or the observation carried none)."""
        event: Activate | Clear
        if change.active:
            event = Activate(change.at, change.observation_ids, change.timer, snapshot)
        else:
            event = Clear(change.at, change.observation_ids, change.timer, latching=rule.latching)
        self._state_event(work, point, event)
        for group in self.rules.groups_with(point.site, point.device):
            self._vote(work, point.tenant, group, change, snapshot)

    def _state_event(self, work: Workset, point: PointId, event: Event) -> None:
        record = work.points[point]
        before = record.state
        after, transitions = machine.apply(before, event)
        record = msgspec.structs.replace(record, state=after)
        handling = self.handling(point)
        for transition in transitions:
            chatter, chattering = record_transition(record.chatter, transition.at)
            flags = set()
            if chattering:
                flags.add(CHATTERING)
            unacked = before.unack_since
            if (
                transition.old is AlarmState.UNACK
                and transition.new is AlarmState.RTNUN
                and unacked is not None
                and is_fleeting(unacked, transition.at)
            ):
                flags.add(FLEETING)
            flagged = replace(transition, flags=frozenset(flags))
            record = msgspec.structs.replace(record, chatter=chatter, flags=flagged.flags)
            fact = facts(before, flagged)
            if handling is not None:
                view = AlarmView(
                    point=point,
                    condition=handling.condition,
                    priority=handling.priority,
                    alarm_class=handling.alarm_class,
                    rationale=handling.rationale,
                    state=flagged.new,
                    active=flagged.active,
                    latched=is_latched(after, handling),
                    # As the contract has it: unset for a one-shot shelve (its end is the clear).
                    shelved_until=after.shelved_until if after.shelve is ShelveKind.TIMED else None,
                    flags=flagged.flags,
                    snapshot=after.snapshot,
                )
                work.emitted.append(Emitted(flagged, fact, view))
            if fact.activation:
                site_floods.note_activation(work, (point.tenant, point.site), flagged.at)
        work.put(point, record)

    def _vote(self, work: Workset, tenant: str, group: VotingGroup, change: Change, snapshot: str) -> None:
        members: dict[str, Member] = {}
        for member in group.members:
            status = self._member(work, tenant, group, member)
            if status is not None:
                members[member.device] = status
        verdict = vote(group, members)
        point = PointId(tenant, group.site, group.id, VOTE_RULE)
        record = work.points.get(point)
        if record is None:
            record = PointRecord(PointState(point))
            work.put(point, record)
        if verdict.confirmed == record.state.active:
            return
        event: Activate | Clear
        if verdict.confirmed:
            # The group's alarm shows the picture of the member detection that confirmed it.
            event = Activate(change.at, change.observation_ids, change.timer, snapshot)
        else:
            event = Clear(change.at, change.observation_ids, change.timer)
        self._state_event(work, point, event)

    def _member(self, work: Workset, tenant: str, group: VotingGroup, member: VotingMember) -> Member | None:
        """A member's condition from its points; None when none of them was ever heard."""
        device, kind, rule_id = member.device, member.kind, member.rule
        heard = active = faulty = stale = False
        for point_kind, rule in self.device_points(tenant, group.site, device):
            record = work.points.get(PointId(tenant, group.site, device, rule.id))
            if record is None or record.condition is None:
                continue
            heard = True
            if not record.condition.active or (kind is not None and point_kind != kind):
                continue
            if rule.condition is ConditionType.BAD_QUALITY:
                faulty = True
            elif rule.condition is ConditionType.STALE:
                stale = True
            elif rule_id is None or rule.id == rule_id:
                active = True
        return Member.of(active=active, faulty=faulty, stale=stale) if heard else None


def _order(obs: Observation) -> tuple[datetime, str]:
    return obs.at, obs.id
