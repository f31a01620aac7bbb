"""Which rule watches a point: the most specific wins, per condition (pure, no files)."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.alarms.domain.model import (
    AlarmClass,
    ConditionType,
    Priority,
    Rationale,
    Rule,
    Selector,
    Text,
)
from services.alarms.domain.rules import DeviceRef, DuplicateRuleError, RuleIndex, matches, specificity

WHY = Rationale(
    Text("원인", "cause"), Text("결과", "consequence"), Text("조치", "action"), timedelta(seconds=60)
)
HIGH, HIGH_HIGH, STALE = ConditionType.HIGH, ConditionType.HIGH_HIGH, ConditionType.STALE

GD1 = DeviceRef(site="alpha", zone="z1", device_type="gas_detector", device="gd-1")
GD2 = DeviceRef(site="alpha", zone="z1", device_type="gas_detector", device="gd-2")
GD3 = DeviceRef(site="alpha", zone="z2", device_type="gas_detector", device="gd-3")
PT3 = DeviceRef(site="alpha", zone="z2", device_type="pressure", device="pt-3")
BETA = DeviceRef(site="beta", zone="z1", device_type="gas_detector", device="gd-1")


def rule(
    rule_id: str, condition: ConditionType = HIGH, setpoint: float | None = 10.0, **selector: str
) -> Rule:
    kind = selector.pop("kind", "gas.h2s")
    return Rule(
        id=rule_id,
        selector=Selector(kind=kind, **selector),
        condition=condition,
        priority=Priority.HIGH,
        alarm_class=AlarmClass.SAFETY,
        rationale=WHY,
        setpoint=setpoint,
    )


def ids(index: RuleIndex, ref: DeviceRef, kind: str = "gas.h2s") -> dict[str, str]:
    return {r.condition.value: r.id for r in index.resolve(ref, kind)}


def test_a_kind_rule_watches_every_device_measuring_the_kind() -> None:
    index = RuleIndex([rule("h2s-high"), rule("lel-high", kind="gas.lel")])
    assert ids(index, GD1) == {"high": "h2s-high"}
    assert ids(index, BETA) == {"high": "h2s-high"}
    assert ids(index, GD1, "gas.co") == {}


def test_device_beats_zone_beats_device_type_beats_kind() -> None:
    index = RuleIndex(
        [
            rule("kind"),
            rule("type", device_type="gas_detector"),
            rule("zone", zone="z1"),
            rule("device", device="gd-1"),
        ]
    )
    assert ids(index, GD1) == {"high": "device"}
    assert ids(index, GD2) == {"high": "zone"}
    assert ids(index, GD3) == {"high": "type"}
    assert ids(index, PT3) == {"high": "kind"}


def test_the_most_specific_rule_wins_per_condition_not_per_point() -> None:
    # A device override of the high set-point keeps the kind-wide high-high and stale rules.
    index = RuleIndex(
        [
            rule("h2s-high"),
            rule("h2s-high-high", HIGH_HIGH, 20.0),
            rule("h2s-stale", STALE, None),
            rule("pit-high", setpoint=5.0, device="gd-1", site="alpha"),
        ]
    )
    assert ids(index, GD1) == {"high": "pit-high", "high_high": "h2s-high-high", "stale": "h2s-stale"}
    assert ids(index, BETA) == {"high": "h2s-high", "high_high": "h2s-high-high", "stale": "h2s-stale"}


def test_a_site_limited_rule_beats_an_unlimited_one_at_the_same_level_only() -> None:
    index = RuleIndex(
        [
            rule("kind"),
            rule("kind-alpha", site="alpha"),
            rule("zone-any", zone="z2"),
            rule("zone-alpha", zone="z1", site="alpha"),
        ]
    )
    assert ids(index, GD1) == {"high": "zone-alpha"}
    assert ids(index, GD3) == {"high": "zone-any"}  # a zone beats a kind, limited to a site or not
    assert ids(index, BETA) == {"high": "kind"}
    beta_z3 = DeviceRef(site="beta", zone="z3", device_type="gas_detector", device="gd-9")
    assert ids(index, beta_z3) == {"high": "kind"}
    alpha_z3 = DeviceRef(site="alpha", zone="z3", device_type="gas_detector", device="gd-9")
    assert ids(index, alpha_z3) == {"high": "kind-alpha"}


def test_a_zone_and_device_type_rule_beats_a_zone_rule() -> None:
    index = RuleIndex([rule("zone", zone="z1"), rule("zone-type", zone="z1", device_type="gas_detector")])
    assert ids(index, GD1) == {"high": "zone-type"}


def test_resolution_is_in_condition_order_and_stable() -> None:
    index = RuleIndex([rule("stale", STALE, None), rule("hh", HIGH_HIGH, 20.0), rule("high")])
    first = index.resolve(GD1, "gas.h2s")
    assert [r.id for r in first] == ["high", "hh", "stale"]
    assert index.resolve(GD1, "gas.h2s") is first  # memoised: one dict probe per observation


def test_two_rules_for_the_same_selector_and_condition_are_refused() -> None:
    with pytest.raises(DuplicateRuleError, match="`a` and `b` both set `high`"):
        RuleIndex([rule("a", zone="z1"), rule("b", zone="z1", setpoint=12.0)])


# --- resolution agrees with its definition on any rule set ---

_SITES, _ZONES, _TYPES, _DEVICES = ("alpha", "beta"), ("z1", "z2"), ("gas_detector", "camera"), ("d1", "d2")
_CONDITIONS = (HIGH, HIGH_HIGH, STALE)
KIND = "gas.h2s"


@st.composite
def selectors(draw: st.DrawFn) -> tuple[Selector, ConditionType]:
    def maybe(values: tuple[str, ...]) -> str | None:
        return draw(st.one_of(st.none(), st.sampled_from(values)))

    selector = Selector(
        kind=draw(st.sampled_from(("gas.h2s", "gas.lel"))),
        site=maybe(_SITES),
        zone=maybe(_ZONES),
        device_type=maybe(_TYPES),
        device=maybe(_DEVICES),
    )
    return selector, draw(st.sampled_from(_CONDITIONS))


@settings(max_examples=200, deadline=None)
@given(st.lists(selectors(), max_size=25, unique=True))
def test_resolution_picks_the_most_specific_match(declared: list[tuple[Selector, ConditionType]]) -> None:
    rules = [
        Rule(f"r{i}", s, c, Priority.LOW, AlarmClass.PROCESS, WHY, setpoint=1.0)
        for i, (s, c) in enumerate(declared)
    ]
    index = RuleIndex(rules)
    for ref in itertools.starmap(DeviceRef, itertools.product(_SITES, _ZONES, _TYPES, _DEVICES)):
        got = {r.condition: r for r in index.resolve(ref, KIND)}
        for condition in _CONDITIONS:
            candidates = [r for r in rules if r.condition is condition and matches(r.selector, ref, KIND)]
            if not candidates:
                assert condition not in got
                continue
            best = max(specificity(r.selector) for r in candidates)
            # Only one candidate can have the best rank: equal rank and both matching means the
            # same selector, which the index refuses.
            assert [r for r in candidates if specificity(r.selector) == best] == [got[condition]]
