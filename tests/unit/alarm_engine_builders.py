"""A small plant for engine tests: three gas detectors voting 2oo3, a pump, and their rules."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from services.alarms.domain.engine import Engine
from services.alarms.domain.evaluate import Quality
from services.alarms.domain.model import (
    AlarmClass,
    ConditionType,
    PointId,
    Priority,
    Rationale,
    Rule,
    Selector,
    Text,
)
from services.alarms.domain.rules import DeviceRef, FaultPolicy, RuleIndex, RuleSet, VotingGroup, VotingMember
from services.alarms.domain.workset import Observation, Workset

TENANT, SITE = "acme", "ulsan"
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
_TEXT = Text(ko="-", en="-")
WHY = Rationale(_TEXT, _TEXT, _TEXT, timedelta(minutes=1))
DETECTORS = ("gd-1", "gd-2", "gd-3")
PUMP = "vt-1"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _rule(rule_id: str, kind: str, condition: ConditionType, **fields: object) -> Rule:
    return Rule(
        id=rule_id,
        selector=Selector(kind=kind),
        condition=condition,
        priority=fields.pop("priority", Priority.HIGH),  # type: ignore[arg-type]
        alarm_class=fields.pop("alarm_class", AlarmClass.SAFETY),  # type: ignore[arg-type]
        rationale=WHY,
        **fields,  # type: ignore[arg-type]
    )


RULES = (
    _rule("lel-high", "gas.lel", ConditionType.HIGH, setpoint=20.0, deadband=2.0),
    _rule("lel-high-high", "gas.lel", ConditionType.HIGH_HIGH, setpoint=40.0, deadband=2.0, latching=True),
    _rule("lel-stale", "gas.lel", ConditionType.STALE, stale_after=timedelta(seconds=60)),
    _rule("lel-fault", "gas.lel", ConditionType.BAD_QUALITY, alarm_class=AlarmClass.SYSTEM),
    _rule(
        "vib-high",
        "vibration",
        ConditionType.HIGH,
        setpoint=4.5,
        deadband=0.5,
        on_delay=timedelta(seconds=5),
        off_delay=timedelta(seconds=5),
        alarm_class=AlarmClass.EQUIPMENT,
    ),
)


def group(policy: FaultPolicy = FaultPolicy.IGNORE) -> VotingGroup:
    return VotingGroup(
        id="lel-2oo3",
        site=SITE,
        members=tuple(VotingMember(device=d, rule="lel-high") for d in DETECTORS),
        m=2,
        fault_policy=policy,
        priority=Priority.EMERGENCY,
        alarm_class=AlarmClass.SAFETY,
        rationale=WHY,
    )


def lookup(tenant: str, site: str, device: str) -> tuple[DeviceRef, tuple[str, ...]] | None:
    if tenant != TENANT or site != SITE:
        return None
    if device in DETECTORS:
        return DeviceRef(site, "fcc", "gas-detector", device), ("gas.lel",)
    if device == PUMP:
        return DeviceRef(site, "fcc", "vibration", device), ("vibration",)
    return None


def engine(policy: FaultPolicy = FaultPolicy.IGNORE) -> Engine:
    return Engine(RuleSet(RuleIndex(RULES), (group(policy),)), lookup)


def obs(
    obs_id: str,
    seconds: float,
    value: float | None,
    *,
    device: str = "gd-1",
    kind: str = "gas.lel",
    quality: int = Quality.GOOD,
) -> Observation:
    return Observation(TENANT, SITE, device, kind, obs_id, at(seconds), value, None, quality)


def point(device: str, rule: str) -> PointId:
    return PointId(TENANT, SITE, device, rule)


def feed(eng: Engine, work: Workset, batches: Iterable[Iterable[Observation]]) -> Workset:
    for batch in batches:
        eng.observe(work, list(batch))
    return work
