"""Which rules watch a point: the most specific rule wins, per condition. Pure and indexed.

Rules are declared per kind, optionally narrowed to a device type, a zone, a device and a site.
For one device and kind, every matching rule is a candidate; for each condition (high, stale, ...)
the most specific candidate wins: a device beats a zone, a zone beats a device type, a device type
beats a kind alone, and at the same level a rule limited to a site beats one that is not. So a
plant declares `gas.h2s high 10 ppm` once and overrides it for the one detector at the sulphur pit.

The engine resolves rules for every observation (tens of thousands a second), so `RuleIndex`
files each rule under the exact selector it declares and `resolve` probes only the selector
shapes that occur, once per point: the answer is memoised, and later calls are one dict probe.

Voting groups and class limits live here too: they are the other half of a loaded rule set.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import NamedTuple

from services.alarms.domain.model import AlarmClass, ConditionType, Priority, Rationale, Rule, Selector


class DeviceRef(NamedTuple):
    """Where a device sits, as far as rule selection cares.

    A named tuple rather than a dataclass: it keys the resolution memo, probed per observation,
    and a tuple hashes and compares in C (a frozen dataclass is about four times slower here).
    """

    site: str
    zone: str
    device_type: str
    device: str


class FaultPolicy(enum.StrEnum):
    """How a faulty or stale voting member counts (it always raises its own fault alarm too)."""

    TRIP = "trip"  # as a vote toward the group alarm: fail safe
    IGNORE = "ignore"  # as no vote: M of the N still needed
    DEGRADE = "degrade"  # out of the group: M-1 of the remaining N-1 (never below 1 of 1)


@dataclass(frozen=True, slots=True)
class VotingMember:
    """One vote: a device, optionally narrowed to one kind it measures or one rule.

    Without `kind` and `rule`, the member is in alarm when any alarm of the device is active.
    """

    device: str
    kind: str | None = None
    rule: str | None = None


@dataclass(frozen=True, slots=True)
class VotingGroup:
    """M out of N members in alarm raise one confirmed group alarm (MooN)."""

    id: str
    site: str
    members: tuple[VotingMember, ...]
    m: int
    fault_policy: FaultPolicy
    priority: Priority
    alarm_class: AlarmClass
    rationale: Rationale

    @property
    def n(self) -> int:
        return len(self.members)


# Defaults when a rule file says nothing. Safety alarms (gas, fire, person down) may be shelved
# for at most one shift, so the next shift has to decide again; process alarms for a day; equipment
# and system alarms (a vibrating spare pump, a dead detector waiting for a technician) for three
# days, the usual wait for a maintenance slot.
DEFAULT_MAX_SHELVE: Mapping[AlarmClass, timedelta] = MappingProxyType(
    {
        AlarmClass.SAFETY: timedelta(hours=8),
        AlarmClass.PROCESS: timedelta(hours=24),
        AlarmClass.EQUIPMENT: timedelta(hours=72),
        AlarmClass.SYSTEM: timedelta(hours=72),
    }
)


@dataclass(frozen=True, slots=True)
class ClassLimits:
    """Per alarm class: the longest an operator may shelve one of its alarms."""

    max_shelve: Mapping[AlarmClass, timedelta] = field(default_factory=lambda: DEFAULT_MAX_SHELVE)

    @classmethod
    def with_overrides(cls, overrides: Mapping[AlarmClass, timedelta]) -> ClassLimits:
        """The defaults, with the classes a rules file sets replaced."""
        return cls(MappingProxyType({**DEFAULT_MAX_SHELVE, **overrides}))

    def max_shelve_of(self, alarm_class: AlarmClass) -> timedelta:
        return self.max_shelve.get(alarm_class, DEFAULT_MAX_SHELVE[alarm_class])


# A selector's key in the index: (kind, site, zone, device_type, device), None where not narrowed.
_Key = tuple[str, str | None, str | None, str | None, str | None]
# Which of (device, zone, device_type, site) a selector names.
_Shape = tuple[bool, bool, bool, bool]


def specificity(selector: Selector) -> _Shape:
    """Orders selectors: compared as tuples, device > zone > device type > site > kind alone.

    Booleans compare False < True, so a selector naming a device outranks every selector that does
    not, whatever else it names; a site only breaks ties between otherwise equal selectors.
    """
    return (
        selector.device is not None,
        selector.zone is not None,
        selector.device_type is not None,
        selector.site is not None,
    )


def selector_key(selector: Selector) -> _Key:
    return (selector.kind, selector.site, selector.zone, selector.device_type, selector.device)


def matches(selector: Selector, ref: DeviceRef, kind: str) -> bool:
    """Whether `selector` applies to `kind` on the device `ref`."""
    return (
        selector.kind == kind
        and selector.site in (None, ref.site)
        and selector.zone in (None, ref.zone)
        and selector.device_type in (None, ref.device_type)
        and selector.device in (None, ref.device)
    )


class DuplicateRuleError(ValueError):
    """Two rules with the same selector and condition: neither is more specific."""

    def __init__(self, first: Rule, second: Rule) -> None:
        self.first = first
        self.second = second
        super().__init__(
            f"rules `{first.id}` and `{second.id}` both set `{second.condition}` for the same selector"
        )


class RuleIndex:
    """Immutable index of rules for most-specific resolution; cheap to ask once built."""

    __slots__ = ("_by_id", "_cache", "_rules", "_shapes", "_table")

    def __init__(self, rules: Iterable[Rule]) -> None:
        """Raises DuplicateRuleError if two rules share selector and condition, and ValueError
        if two share an id (the rules file reports both with their lines first)."""
        self._rules = tuple(rules)
        self._by_id: dict[str, Rule] = {}
        table: dict[_Key, dict[ConditionType, Rule]] = {}
        shapes: set[_Shape] = set()
        for rule in self._rules:
            if rule.id in self._by_id:
                raise ValueError(f"duplicate rule id `{rule.id}`")
            self._by_id[rule.id] = rule
            per_condition = table.setdefault(selector_key(rule.selector), {})
            first = per_condition.get(rule.condition)
            if first is not None:
                raise DuplicateRuleError(first, rule)
            per_condition[rule.condition] = rule
            shapes.add(specificity(rule.selector))
        self._table = table
        # Most specific shape first, so the first rule found per condition is the winner.
        self._shapes = tuple(sorted(shapes, reverse=True))
        self._cache: dict[tuple[DeviceRef, str], tuple[Rule, ...]] = {}

    @property
    def rules(self) -> Sequence[Rule]:
        return self._rules

    def rule(self, rule_id: str) -> Rule | None:
        return self._by_id.get(rule_id)

    def resolve(self, ref: DeviceRef, kind: str) -> tuple[Rule, ...]:
        """The rules watching `kind` on `ref`: one per condition, the most specific, in the
        order of ConditionType. Memoised per (device, kind): the device set is the registry's, so
        the memo is bounded by the number of points."""
        found = self._cache.get((ref, kind))
        if found is None:
            found = self._resolve(ref, kind)
            self._cache[(ref, kind)] = found
        return found

    def _resolve(self, ref: DeviceRef, kind: str) -> tuple[Rule, ...]:
        winners: dict[ConditionType, Rule] = {}
        for has_device, has_zone, has_type, has_site in self._shapes:
            key: _Key = (
                kind,
                ref.site if has_site else None,
                ref.zone if has_zone else None,
                ref.device_type if has_type else None,
                ref.device if has_device else None,
            )
            per_condition = self._table.get(key)
            if per_condition is None:
                continue
            for condition, rule in per_condition.items():
                winners.setdefault(condition, rule)
        return tuple(winners[c] for c in ConditionType if c in winners)


class RuleSet:
    """Everything the alarm rule files declare, validated together against the site registry.

    Immutable once built: a reload builds a new one and swaps it in whole.
    """

    __slots__ = ("_by_device", "_by_site", "class_limits", "index", "voting_groups")

    def __init__(
        self,
        index: RuleIndex,
        voting_groups: Iterable[VotingGroup] = (),
        class_limits: ClassLimits | None = None,
    ) -> None:
        self.index = index
        self.voting_groups = tuple(voting_groups)
        self.class_limits = class_limits or ClassLimits()
        by_site: dict[str, list[VotingGroup]] = {}
        by_device: dict[tuple[str, str], list[VotingGroup]] = {}
        for group in self.voting_groups:
            by_site.setdefault(group.site, []).append(group)
            for member in group.members:
                in_device = by_device.setdefault((group.site, member.device), [])
                if group not in in_device:
                    in_device.append(group)
        self._by_site = {site: tuple(groups) for site, groups in by_site.items()}
        self._by_device = {key: tuple(groups) for key, groups in by_device.items()}

    @property
    def rules(self) -> Sequence[Rule]:
        return self.index.rules

    def resolve(self, ref: DeviceRef, kind: str) -> tuple[Rule, ...]:
        return self.index.resolve(ref, kind)

    def groups_of(self, site: str) -> tuple[VotingGroup, ...]:
        """The voting groups of a site, in file order."""
        return self._by_site.get(site, ())

    def groups_with(self, site: str, device: str) -> tuple[VotingGroup, ...]:
        """The voting groups a device votes in: where a change of its alarms must be counted."""
        return self._by_device.get((site, device), ())
