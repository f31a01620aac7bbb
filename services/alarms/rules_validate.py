"""Checks on alarm rule files that types cannot express, against the site registry.

Each failure is a ConfigError naming the file, the line and the key path, like the YAML loader's
own errors, so an alarm engineer reads `sites/alarms/ulsan.yaml:42: rules[3].setpoint: ...`.
Checked: the fields each condition takes; unique ids across files; every site, device, zone and
kind a rule or voting group names exists (a device id shared by two sites needs its site named);
set-points inside each matching device's calibrated range; one rule per selector and condition;
high below high-high and low above low-low for every point as resolved; MooN with 1 <= M <= N.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.alarms.domain.model import ConditionType
from services.alarms.domain.rules import DeviceRef, RuleIndex, selector_key, specificity
from services.alarms.rules_file import (
    LEVEL_CONDITIONS,
    LoadedRulesFile,
    RuleSpec,
    SelectorSpec,
    VotingGroupSpec,
    to_rule,
    to_selector,
)
from services.common.config.source import SourceFile
from services.common.sites.alert_devices import DEVICE_TYPE as ALERT_DEVICE_TYPE
from services.common.sites.alert_devices import is_alert_kind
from services.common.sites.model import Device, Measure
from services.common.sites.registry import SiteRegistry
from services.common.validation import PathPart

# Per condition: the field it needs, and the optional fields that mean something to it. A field
# set where it means nothing is refused: it is a mistake the engineer believes is in effect.
_NEEDS: dict[ConditionType, str | None] = {
    **dict.fromkeys(LEVEL_CONDITIONS, "setpoint"),
    ConditionType.RATE_OF_RISE: "rate_per_min",
    ConditionType.STALE: "stale_s",
    ConditionType.BAD_QUALITY: None,
    ConditionType.DETECTION: "min_confidence",
}
_TAKES: dict[ConditionType, frozenset[str]] = {
    **dict.fromkeys(LEVEL_CONDITIONS, frozenset({"setpoint", "deadband", "on_delay_s", "off_delay_s"})),
    ConditionType.RATE_OF_RISE: frozenset({"rate_per_min", "on_delay_s", "off_delay_s"}),
    ConditionType.STALE: frozenset({"stale_s"}),
    ConditionType.BAD_QUALITY: frozenset({"on_delay_s", "off_delay_s"}),
    ConditionType.DETECTION: frozenset({"min_confidence", "persistence", "off_delay_s"}),
}
_OPTIONAL = (
    "setpoint",
    "deadband",
    "on_delay_s",
    "off_delay_s",
    "rate_per_min",
    "stale_s",
    "min_confidence",
    "persistence",
)
# Device health conditions: they are how a member is faulty, not how it votes.
_HEALTH = frozenset({ConditionType.STALE, ConditionType.BAD_QUALITY})
# (upper, lower, milder): the upper rule's set-point must lie above the lower's. When neither
# rule is more specific, the error points at the milder one: "a high below its high-high".
_ORDERED = (
    (ConditionType.HIGH_HIGH, ConditionType.HIGH, ConditionType.HIGH),
    (ConditionType.LOW, ConditionType.LOW_LOW, ConditionType.LOW),
)


@dataclass(frozen=True, slots=True)
class _At:
    """Where something was declared."""

    source: SourceFile
    path: tuple[PathPart, ...]


class _FirstSeen:
    """Remembers where each key was first declared, to report a duplicate with both places."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._seen: dict[object, _At] = {}

    def add(self, key: object, label: str, at: _At) -> None:
        first = self._seen.setdefault(key, at)
        if first is not at:
            where = first.source.where(first.path, at.source)
            raise at.source.error(at.path, f"duplicate {self._what} `{label}` (first at {where})")


@dataclass(frozen=True, slots=True)
class _Point:
    """A device measuring a kind: one place a rule may apply."""

    ref: DeviceRef
    measure: Measure


def validate_rule_files(files: Sequence[LoadedRulesFile], registry: SiteRegistry) -> None:
    """Raises the first ConfigError found across `files`, checked as one set against `registry`."""
    sources = [(SourceFile(name, lines), doc) for name, doc, lines in files]
    rule_ids, group_ids = _FirstSeen("rule id"), _FirstSeen("voting group id")
    limits = _FirstSeen("class limit")
    for source, doc in sources:
        for i, rule in enumerate(doc.rules):
            rule_ids.add(rule.id, rule.id, _At(source, ("rules", i, "id")))
        for g, group in enumerate(doc.voting_groups):
            group_ids.add(group.id, group.id, _At(source, ("voting_groups", g, "id")))
        if doc.class_limits is not None:
            for name in doc.class_limits.__struct_fields__:
                if getattr(doc.class_limits, name) is not None:
                    limits.add(name, name, _At(source, ("class_limits", name)))

    points = [
        _Point(DeviceRef(site.id, device.zone, device.type, device.id), measure)
        for site in registry.sites
        for device in site.devices
        for measure in device.measures
    ]
    selectors = _FirstSeen("rule for this selector and condition")
    located: dict[str, _At] = {}
    for source, doc in sources:
        for i, spec in enumerate(doc.rules):
            at = _At(source, ("rules", i))
            located[spec.id] = at
            _check_fields(spec, at)
            matched = _check_selector(spec.selector, registry, points, _At(source, (*at.path, "selector")))
            _check_range(spec, matched, at)
            label = f"{spec.condition}` on `{_describe(spec.selector)}"
            key = (selector_key(to_selector(spec.selector)), spec.condition)
            selectors.add(key, label, _At(source, (*at.path, "selector")))

    index = RuleIndex(to_rule(spec) for _, doc in sources for spec in doc.rules)
    _check_order(index, points, located)
    for source, doc in sources:
        for g, group in enumerate(doc.voting_groups):
            _check_group(group, registry, index, _At(source, ("voting_groups", g)))


def _check_fields(spec: RuleSpec, at: _At) -> None:
    takes = _TAKES[spec.condition]
    for name in _OPTIONAL:
        if getattr(spec, name) is not None and name not in takes:
            expected = ", ".join(f"`{n}`" for n in sorted(takes)) or "none"
            message = f"`{name}` does not apply to a `{spec.condition}` rule (it takes {expected})"
            raise at.source.error((*at.path, name), message)
    needed = _NEEDS[spec.condition]
    if needed is not None and getattr(spec, needed) is None:
        raise at.source.error((*at.path, needed), f"a `{spec.condition}` rule needs `{needed}`")
    persistence = spec.persistence
    if persistence is not None and persistence.count > 1 and persistence.window_s <= 0:
        raise at.source.error(
            (*at.path, "persistence", "window_s"),
            f"{persistence.count} detections need a window longer than 0 s",
        )


def _check_selector(
    selector: SelectorSpec, registry: SiteRegistry, points: Sequence[_Point], at: _At
) -> list[_Point]:
    """The points the selector matches; refuses names the registry does not know."""
    if selector.site is not None and registry.site(selector.site) is None:
        raise at.source.error((*at.path, "site"), f"unknown site `{selector.site}`")
    sites = [s for s in registry.sites if selector.site in (None, s.id)]
    in_site = f" in site `{selector.site}`" if selector.site is not None else ""
    if selector.device is not None:
        holders = [s.id for s in sites if registry.device(s.id, selector.device) is not None]
        if not holders:
            raise at.source.error((*at.path, "device"), f"unknown device `{selector.device}`{in_site}")
        if len(holders) > 1:
            raise at.source.error(
                (*at.path, "device"),
                f"device `{selector.device}` is in several sites ({', '.join(holders)}): "
                "name the one meant in `site`",
            )
    if selector.zone is not None and all(registry.zone(s.id, selector.zone) is None for s in sites):
        raise at.source.error((*at.path, "zone"), f"unknown zone `{selector.zone}`{in_site}")
    matched = [p for p in points if _selects(selector, p)]
    if not matched and _watches_alerts(selector):
        return []  # alerts are devices of their own, known once they fire (alert_devices.py)
    if not matched:
        if not any(p.measure.kind == selector.kind for p in points):
            message = f"no device measures `{selector.kind}`"
        else:
            message = f"no device matching this selector measures `{selector.kind}`"
        raise at.source.error((*at.path, "kind"), message)
    return matched


def _watches_alerts(selector: SelectorSpec) -> bool:
    """An infrastructure kind, narrowed to nothing an alert device does not have."""
    return (
        is_alert_kind(selector.kind)
        and selector.device is None
        and selector.zone is None
        and selector.device_type in (None, ALERT_DEVICE_TYPE)
    )


def _selects(selector: SelectorSpec, point: _Point) -> bool:
    ref = point.ref
    return (
        point.measure.kind == selector.kind
        and selector.site in (None, ref.site)
        and selector.zone in (None, ref.zone)
        and selector.device_type in (None, ref.device_type)
        and selector.device in (None, ref.device)
    )


def _check_range(spec: RuleSpec, matched: Sequence[_Point], at: _At) -> None:
    if spec.condition not in LEVEL_CONDITIONS or spec.setpoint is None:
        return
    setpoint, deadband = spec.setpoint, spec.deadband or 0.0
    # A high clears below set-point - deadband, a low above set-point + deadband.
    upward = spec.condition in (ConditionType.HIGH, ConditionType.HIGH_HIGH)
    clears_at = setpoint - deadband if upward else setpoint + deadband
    for point in matched:
        if point.measure.range is None:
            continue
        low, high = point.measure.range
        unit, kind = point.measure.unit, spec.selector.kind
        span = f"the range [{low:g}, {high:g}] {unit} of `{kind}` on {_device(point.ref)}"
        if not low <= setpoint <= high:
            raise at.source.error((*at.path, "setpoint"), f"set-point {setpoint:g} is outside {span}")
        if not low <= clears_at <= high:
            raise at.source.error(
                (*at.path, "deadband"),
                f"with deadband {deadband:g} the alarm would clear at {clears_at:g}, outside {span}, "
                "so it could never clear",
            )


def _check_order(index: RuleIndex, points: Sequence[_Point], located: dict[str, _At]) -> None:
    """High below high-high and low above low-low, for every point as the rules resolve there:
    a device override can break the order a kind-wide pair keeps."""
    for point in points:
        resolved = {rule.condition: rule for rule in index.resolve(point.ref, point.measure.kind)}
        for upper_condition, lower_condition, milder in _ORDERED:
            upper, lower = resolved.get(upper_condition), resolved.get(lower_condition)
            if upper is None or lower is None or upper.setpoint is None or lower.setpoint is None:
                continue
            if lower.setpoint < upper.setpoint:
                continue
            # Blame the more specific rule of the two: it is the override that broke the order.
            mild, severe = (lower, upper) if milder is lower_condition else (upper, lower)
            severe_wins = specificity(severe.selector) > specificity(mild.selector)
            blamed, other = (severe, mild) if severe_wins else (mild, severe)
            at, other_at = located[blamed.id], located[other.id]
            raise at.source.error(
                (*at.path, "setpoint"),
                f"the {_name(lower_condition)} set-point ({lower.setpoint:g}, rule `{lower.id}`) must be "
                f"below the {_name(upper_condition)} set-point ({upper.setpoint:g}, rule `{upper.id}`) for "
                f"`{point.measure.kind}` on {_device(point.ref)}; "
                f"rule `{other.id}` is at {other_at.source.where(other_at.path, at.source)}",
            )


def _check_group(group: VotingGroupSpec, registry: SiteRegistry, index: RuleIndex, at: _At) -> None:
    site = registry.site(group.site)
    if site is None:
        raise at.source.error((*at.path, "site"), f"unknown site `{group.site}`")
    devices = _FirstSeen("device")
    for k, member in enumerate(group.members):
        path = (*at.path, "members", k)
        device = registry.device(group.site, member.device)
        if device is None:
            raise at.source.error((*path, "device"), _unknown_member(member.device, group.site, registry))
        ref = DeviceRef(group.site, device.zone, device.type, device.id)
        # MooN assumes independent votes: one device, whatever it measures, is one vote.
        devices.add(member.device, member.device, _At(at.source, (*path, "device")))
        kinds = _kinds_of(device)
        if member.kind is not None and member.kind not in kinds:
            raise at.source.error(
                (*path, "kind"), f"device `{member.device}` does not measure `{member.kind}`"
            )
        if member.rule is not None:
            rule = index.rule(member.rule)
            if rule is None:
                raise at.source.error((*path, "rule"), f"unknown rule `{member.rule}`")
            if member.kind is not None and rule.selector.kind != member.kind:
                raise at.source.error(
                    (*path, "rule"), f"rule `{rule.id}` watches `{rule.selector.kind}`, not `{member.kind}`"
                )
            if rule.condition in _HEALTH:
                raise at.source.error(
                    (*path, "rule"),
                    f"rule `{rule.id}` is a `{rule.condition}` rule: a member votes with its process "
                    "alarms, and the group's `policy` says how a stale or faulty member counts",
                )
            if rule not in index.resolve(ref, rule.selector.kind):
                raise at.source.error(
                    (*path, "rule"),
                    f"rule `{rule.id}` does not watch device `{member.device}` (it does not match, or a "
                    "more specific rule replaces it there)",
                )
        watched = [member.kind] if member.kind is not None else kinds
        if not any(r.condition not in _HEALTH for kind in watched for r in index.resolve(ref, kind)):
            raise at.source.error(
                (*path, "device"), f"no rule watches device `{member.device}`, so it could never vote"
            )
    n = len(group.members)
    if not 1 <= group.m <= n:
        raise at.source.error((*at.path, "m"), f"m must be between 1 and the {n} members, got {group.m}")


def _unknown_member(device: str, site: str, registry: SiteRegistry) -> str:
    elsewhere = [s.id for s in registry.sites if registry.device(s.id, device) is not None]
    if elsewhere:
        return f"device `{device}` belongs to site {', '.join(f'`{s}`' for s in elsewhere)}, not `{site}`"
    return f"unknown device `{device}` in site `{site}`"


def _kinds_of(device: Device) -> list[str]:
    return [measure.kind for measure in device.measures]


def _name(condition: ConditionType) -> str:
    return condition.value.replace("_", "-")


def _device(ref: DeviceRef) -> str:
    return f"device `{ref.device}` (site `{ref.site}`)"


def _describe(selector: SelectorSpec) -> str:
    parts = [selector.kind]
    for name in ("site", "zone", "device_type", "device"):
        value = getattr(selector, name)
        if value is not None:
            parts.append(f"{name}={value}")
    return " ".join(parts)
