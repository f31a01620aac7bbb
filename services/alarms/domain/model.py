"""The alarm vocabulary shared by rules, evaluation, the state machine and voting. Pure data.

Terms follow ISA-18.2 / IEC 62682: an alarm *point* is one condition of one device (a gas
detector's high-high on H2S); its *state* is one of NORM, UNACK, ACKED, RTNUN, SHLVD, DSUPR,
OOSRV; every change of state is one `Transition` with its cause. Time is always a parameter.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta


class Priority(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    EMERGENCY = "emergency"


class AlarmClass(enum.StrEnum):
    # Gas, fire, person down and the like: never shelved past the class maximum, never silenced
    # by flood handling.
    SAFETY = "safety"
    PROCESS = "process"
    EQUIPMENT = "equipment"
    # Device faults and communication loss.
    SYSTEM = "system"


class AlarmState(enum.StrEnum):
    NORM = "NORM"  # normal
    UNACK = "UNACK"  # active, unacknowledged
    ACKED = "ACKED"  # active, acknowledged
    RTNUN = "RTNUN"  # returned to normal, unacknowledged
    SHLVD = "SHLVD"  # shelved by an operator
    DSUPR = "DSUPR"  # suppressed by design (maintenance, permit-to-work, schedule)
    OOSRV = "OOSRV"  # out of service


class ConditionType(enum.StrEnum):
    HIGH = "high"
    HIGH_HIGH = "high_high"
    LOW = "low"
    LOW_LOW = "low_low"
    RATE_OF_RISE = "rate_of_rise"  # units per minute
    STALE = "stale"  # no observation for `stale_s`: communication loss
    BAD_QUALITY = "bad_quality"  # the device reports a fault (quality bad)
    DETECTION = "detection"  # video.* detections: confidence and persistence


class Language(enum.StrEnum):
    KO = "ko"
    EN = "en"


@dataclass(frozen=True, slots=True)
class Text:
    """One text in Korean and English (the master alarm database is bilingual)."""

    ko: str
    en: str


@dataclass(frozen=True, slots=True)
class Rationale:
    """ISA-18.2 master alarm database fields: why the alarm exists and what to do."""

    cause: Text
    consequence: Text
    action: Text
    time_to_respond: timedelta


@dataclass(frozen=True, slots=True)
class Selector:
    """Which points a rule applies to. The most specific matching rule wins (see rules.py):
    a device beats a zone, a zone beats a device type, a device type beats a kind alone."""

    kind: str
    device: str | None = None
    zone: str | None = None
    device_type: str | None = None
    site: str | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One alarm condition to watch, with its set-point and handling."""

    id: str
    selector: Selector
    condition: ConditionType
    priority: Priority
    alarm_class: AlarmClass
    rationale: Rationale
    setpoint: float | None = None  # high, high_high, low, low_low; rate_of_rise: units per minute
    deadband: float = 0.0  # the value must cross back past setpoint -/+ deadband to clear
    on_delay: timedelta = timedelta(0)  # the condition must hold this long to activate
    off_delay: timedelta = timedelta(0)  # and be gone this long to clear
    stale_after: timedelta | None = None  # stale: no observation for this long
    min_confidence: float | None = None  # detection: weaker detections are ignored
    persistence_count: int = 1  # detection: this many detections ...
    persistence_window: timedelta = timedelta(0)  # ... within this window activate
    latching: bool = False  # stays active until acknowledged after the condition cleared


@dataclass(frozen=True, slots=True)
class PointId:
    """One alarm point: a rule's condition on one device of one site of one tenant."""

    tenant: str
    site: str
    device: str
    rule: str

    @property
    def alarm_id(self) -> str:
        # Tokens are slugs or device ids (no dots), so the id can be a bus subject token.
        return f"{self.device}--{self.rule}"


@dataclass(frozen=True, slots=True)
class OperatorAction:
    """An operator's request on an alarm: who, what, why."""

    person: str  # subject of the token or key id
    action: str  # ack, shelve, unshelve, suppress, unsuppress, out_of_service, return_to_service
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of an alarm point's state, with its cause: observation ids, or an operator's
    action, or a timer that fell due."""

    point: PointId
    old: AlarmState
    new: AlarmState
    at: datetime
    observation_ids: tuple[str, ...] = ()
    action: OperatorAction | None = None
    timer: str | None = None  # which timer fired: on_delay, off_delay, shelve_expiry, stale
    active: bool = False  # whether the condition is active after this transition
    flags: frozenset[str] = field(default_factory=frozenset)  # chattering, fleeting
