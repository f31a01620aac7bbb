"""Fusion rules: which alarms make which incident, how they join, how it is confirmed and ends.

A rule is declared in config (the `incidents.fusion_rules` section) or taken from the defaults
below. Rules are tried in order; an alarm joins an open incident of the first rule that matches
it and finds one near enough (same zone, within `radius_m`, or the same device) within `window_s`
of the incident's alarms; otherwise the first rule that may open on it opens one.

Kind patterns are exact kinds (`gas.h2s`) or a family (`gas.*`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.alarms.domain.model import AlarmClass, ConditionType
from services.incidents.domain.model import IncidentType, Signal, Text, Urgency

CreateOn = Literal["any", "all"]
# first: the first member back to normal resolves it; last: the member that joined last;
# all: when no member is active any more; never: only a person resolves it.
ResolveOn = Literal["first", "last", "all", "never"]

KindPattern = Annotated[str, Meta(min_length=1, pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?$")]


def kind_matches(pattern: str, kind: str | None) -> bool:
    if kind is None:
        return False
    if pattern.endswith(".*"):
        return kind.startswith(pattern[:-1])
    return kind == pattern


class FusionRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    type: IncidentType
    # What may join: kinds, alarm classes and conditions (empty: any).
    kinds: tuple[KindPattern, ...] = ()
    classes: tuple[AlarmClass, ...] = ()
    conditions: tuple[ConditionType, ...] = ()
    # What may open an incident (unset: whatever may join); `all`: one alarm of each before it opens.
    opens_on: tuple[KindPattern, ...] | None = None
    create_on: CreateOn = "any"
    window_s: Annotated[float, Meta(gt=0)] = 600.0
    radius_m: Annotated[float, Meta(ge=0)] = 0.0
    resolve_on: ResolveOn = "all"
    # Cross-source confirmation: an alarm of each group (by kind, or a voting group's confirmed
    # alarm for the group ["vote"]) confirms the incident: certainty Observed, severity one up.
    confirm_by: tuple[tuple[KindPattern, ...], ...] = ()
    urgency: Urgency = Urgency.IMMEDIATE
    # What the responder does first, before the alarms' own operator actions.
    actions: tuple[Text, ...] = ()

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.window_s)

    def accepts(self, signal: Signal) -> bool:
        """Whether the alarm may join an incident of this rule."""
        if self.classes and signal.alarm_class not in self.classes:
            return False
        if self.conditions and signal.condition not in self.conditions:
            return False
        return not self.kinds or any(kind_matches(p, signal.kind) for p in self.kinds)

    def may_open(self, signal: Signal) -> bool:
        """Whether the alarm, alone (create_on any) or as one of a set (all), opens one."""
        if not self.accepts(signal):
            return False
        return self.opens_on is None or any(kind_matches(p, signal.kind) for p in self.opens_on)

    def opening_groups(self) -> tuple[str, ...]:
        """The kind patterns that each need an alarm before an `all` rule opens."""
        return self.opens_on if self.opens_on is not None else self.kinds


_PROCESS_CONDITIONS = (
    ConditionType.HIGH,
    ConditionType.HIGH_HIGH,
    ConditionType.LOW,
    ConditionType.LOW_LOW,
    ConditionType.RATE_OF_RISE,
    ConditionType.DETECTION,
)

DEFAULT_RULES: tuple[FusionRule, ...] = (
    FusionRule(
        type=IncidentType.GAS_RELEASE,
        # A camera's smoke (or a model's vapour class) over a gas alarm is the cloud seen.
        kinds=("gas.*", "video.smoke", "video.vapour"),
        conditions=_PROCESS_CONDITIONS,
        opens_on=("gas.*",),
        window_s=900,
        radius_m=150,
        resolve_on="never",  # a release is closed by a person who saw the source isolated
        confirm_by=(("gas.*",), ("video.smoke", "video.vapour")),
        actions=(Text(ko="풍향 확인 후 풍상 방향에서 접근", en="Check the wind and approach from upwind"),),
    ),
    FusionRule(
        type=IncidentType.FIRE,
        kinds=("flame", "temperature", "video.fire", "video.smoke"),
        conditions=_PROCESS_CONDITIONS,
        window_s=600,
        radius_m=100,
        resolve_on="never",
        confirm_by=(("flame",), ("temperature",), ("video.fire", "video.smoke")),
        actions=(Text(ko="소방대 출동 여부 확인", en="Confirm the fire brigade is on its way"),),
    ),
    FusionRule(
        type=IncidentType.PERSON_DOWN,
        # video.person_down is the video service's rule: down (a fall model's class, or a box
        # turned horizontal) and not up again for its `seconds`; it opens the incident alone.
        # video.fall is a fall model's raw class as a gateway may post it: a fall, then the
        # person still down, is what confirms it.
        kinds=("video.person_down", "video.fall"),
        window_s=300,
        radius_m=30,
        resolve_on="never",
        confirm_by=(("video.fall",), ("video.person_down",)),
        actions=(Text(ko="구조 인원 현장 급파", en="Send a rescuer to the person now"),),
    ),
    FusionRule(
        type=IncidentType.INTRUSION,
        kinds=("video.intrusion", "video.loitering", "video.line_crossing"),
        window_s=300,
        radius_m=50,
    ),
    FusionRule(
        type=IncidentType.PPE_VIOLATION,
        kinds=("video.ppe_violation",),
        window_s=300,
        urgency=Urgency.EXPECTED,
    ),
    FusionRule(
        type=IncidentType.COMM_LOSS,
        conditions=(ConditionType.STALE,),
        window_s=600,
        urgency=Urgency.EXPECTED,
    ),
    FusionRule(
        type=IncidentType.EQUIPMENT_FAULT,
        conditions=(ConditionType.BAD_QUALITY,),
        window_s=600,
        urgency=Urgency.EXPECTED,
    ),
    FusionRule(
        type=IncidentType.EQUIPMENT_FAULT,
        classes=(AlarmClass.EQUIPMENT, AlarmClass.PROCESS, AlarmClass.SYSTEM),
        window_s=600,
        urgency=Urgency.EXPECTED,
    ),
)
