"""Alarm rule files (`sites/alarms/*.yaml`): the YAML model, and loading them into a `RuleSet`.

Rules live in files of their own rather than inside the site files: the site model belongs to the
shared kernel, which knows no service, and a plant's alarm engineer edits set-points on another
cadence than the instrument list. The rule files are checked against the site registry instead
(`rules_validate.py`): every device, zone and kind they name must exist there, and set-points must
lie in the device's calibrated range.

A file looks like this (times in seconds, texts in Korean and English):

    version: 1
    class_limits: {safety: {max_shelve_s: 28800}}
    rules:
      - id: h2s-high
        selector: {kind: gas.h2s}          # optional: site, zone, device_type, device
        condition: high
        setpoint: 10
        deadband: 1
        on_delay_s: 2
        priority: high
        class: safety
        rationale:
          cause: {ko: ..., en: ...}
          consequence: {ko: ..., en: ...}
          action: {ko: ..., en: ...}
          time_to_respond_s: 300
    voting_groups:
      - id: fcc2-gas-2oo3
        site: ulsan-refinery
        members: [{device: gd-fcc2-201, kind: gas.lel}, ...]
        m: 2
        policy: trip
        ...

`rule_loader.load_rule_set` reads, checks and converts these files into a RuleSet.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.alarms.domain.model import AlarmClass, ConditionType, Priority, Rationale, Rule, Selector, Text
from services.alarms.domain.rules import FaultPolicy, VotingGroup, VotingMember
from services.common.config.yaml_loader import LineMap
from services.common.sites.model import DeviceType
from services.common.types import DeviceId, Kind, Slug

Name = Annotated[str, Meta(min_length=1)]
Seconds = Annotated[float, Meta(ge=0)]
PositiveSeconds = Annotated[float, Meta(gt=0)]
Confidence = Annotated[float, Meta(ge=0, le=1)]

# The conditions compared against a set-point; they are also the ones checked against the range.
LEVEL_CONDITIONS = frozenset(
    {ConditionType.HIGH, ConditionType.HIGH_HIGH, ConditionType.LOW, ConditionType.LOW_LOW}
)


class TextSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    ko: Name
    en: Name


class RationaleSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The master alarm database entry: why the alarm exists and what the operator does."""

    cause: TextSpec
    consequence: TextSpec
    action: TextSpec
    time_to_respond_s: PositiveSeconds


class SelectorSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    kind: Kind
    site: Slug | None = None
    zone: Slug | None = None
    device_type: DeviceType | None = None
    device: DeviceId | None = None


class PersistenceSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Detection rules: `count` detections within `window_s` activate."""

    count: Annotated[int, Meta(ge=1)]
    window_s: Seconds


class RuleSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One rule. What each condition takes (checked in rules_validate.py; anything else is refused):

    high, high_high, low, low_low: `setpoint` (required), `deadband`, `on_delay_s`, `off_delay_s`
    rate_of_rise: `rate_per_min` (required, units per minute), `on_delay_s`, `off_delay_s`
    stale: `stale_s` (required)
    bad_quality: `on_delay_s`, `off_delay_s`
    detection: `min_confidence` (required, 0-1), `persistence`, `off_delay_s`
    """

    id: Slug
    selector: SelectorSpec
    condition: ConditionType
    priority: Priority
    alarm_class: AlarmClass = msgspec.field(name="class")
    rationale: RationaleSpec
    latching: bool = False
    setpoint: float | None = None
    deadband: Annotated[float, Meta(ge=0)] | None = None
    on_delay_s: Seconds | None = None
    off_delay_s: Seconds | None = None
    rate_per_min: Annotated[float, Meta(gt=0)] | None = None
    stale_s: PositiveSeconds | None = None
    min_confidence: Confidence | None = None
    persistence: PersistenceSpec | None = None


class MemberSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    device: DeviceId
    kind: Kind | None = None
    rule: Slug | None = None


class VotingGroupSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    id: Slug
    site: Slug
    members: Annotated[tuple[MemberSpec, ...], Meta(min_length=2)]
    m: int
    policy: FaultPolicy
    priority: Priority
    alarm_class: AlarmClass = msgspec.field(name="class")
    rationale: RationaleSpec


class ClassLimitSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    max_shelve_s: PositiveSeconds


class ClassLimitsSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    safety: ClassLimitSpec | None = None
    process: ClassLimitSpec | None = None
    equipment: ClassLimitSpec | None = None
    system: ClassLimitSpec | None = None


class RulesFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One alarm rules file. Several merge into one RuleSet; ids are unique across them."""

    version: Literal[1]
    class_limits: ClassLimitsSpec | None = None
    rules: tuple[RuleSpec, ...] = ()
    voting_groups: tuple[VotingGroupSpec, ...] = ()


# (filename, parsed file, its line map if it came from YAML)
LoadedRulesFile = tuple[str, RulesFile, LineMap | None]


def class_limits_of(spec: ClassLimitsSpec) -> dict[AlarmClass, timedelta]:
    limits: dict[AlarmClass, timedelta] = {}
    for alarm_class in AlarmClass:
        limit: ClassLimitSpec | None = getattr(spec, alarm_class.value)
        if limit is not None:
            limits[alarm_class] = timedelta(seconds=limit.max_shelve_s)
    return limits


def to_text(spec: TextSpec) -> Text:
    return Text(ko=spec.ko, en=spec.en)


def to_rationale(spec: RationaleSpec) -> Rationale:
    return Rationale(
        cause=to_text(spec.cause),
        consequence=to_text(spec.consequence),
        action=to_text(spec.action),
        time_to_respond=timedelta(seconds=spec.time_to_respond_s),
    )


def to_selector(spec: SelectorSpec) -> Selector:
    return Selector(
        kind=spec.kind, device=spec.device, zone=spec.zone, device_type=spec.device_type, site=spec.site
    )


def to_rule(spec: RuleSpec) -> Rule:
    """The domain rule; assumes the spec passed validation (condition-specific fields present)."""
    setpoint = spec.rate_per_min if spec.condition is ConditionType.RATE_OF_RISE else spec.setpoint
    persistence = spec.persistence
    return Rule(
        id=spec.id,
        selector=to_selector(spec.selector),
        condition=spec.condition,
        priority=spec.priority,
        alarm_class=spec.alarm_class,
        rationale=to_rationale(spec.rationale),
        setpoint=setpoint,
        deadband=spec.deadband or 0.0,
        on_delay=timedelta(seconds=spec.on_delay_s or 0.0),
        off_delay=timedelta(seconds=spec.off_delay_s or 0.0),
        stale_after=timedelta(seconds=spec.stale_s) if spec.stale_s is not None else None,
        min_confidence=spec.min_confidence,
        persistence_count=persistence.count if persistence is not None else 1,
        persistence_window=timedelta(seconds=persistence.window_s if persistence is not None else 0.0),
        latching=spec.latching,
    )


def to_group(spec: VotingGroupSpec) -> VotingGroup:
    return VotingGroup(
        id=spec.id,
        site=spec.site,
        members=tuple(VotingMember(device=m.device, kind=m.kind, rule=m.rule) for m in spec.members),
        m=spec.m,
        fault_policy=spec.policy,
        priority=spec.priority,
        alarm_class=spec.alarm_class,
        rationale=to_rationale(spec.rationale),
    )
