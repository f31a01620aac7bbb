"""The incident vocabulary: types, CAP 1.2 severity / urgency / certainty, statuses, and the alarm
signal fusion reads. Pure data; time is always a parameter.

An incident is a group of alarms judged to be one happening (a gas release spreading over two
zones, a fire seen by a flame detector, a heat detector and a camera). Severity, urgency and
certainty use the enumerations of CAP 1.2 (OASIS), so escalation and the city feed can render
an incident as a CAP alert without a second mapping.
"""

from __future__ import annotations

import enum
from datetime import datetime

import msgspec

from services.alarms.domain.model import AlarmClass, ConditionType, Priority

# A camera's own condition (the video service's `video.camera_health`) is a fact about the
# camera, not something it saw.
_CAMERA_HEALTH = "video.camera_health"


def seen_by_camera(kind: str | None) -> bool:
    """Whether the alarm's kind is a camera's detection (`video.<rule>`, services/video)."""
    return kind is not None and kind.startswith("video.") and kind != _CAMERA_HEALTH


class IncidentType(enum.StrEnum):
    GAS_RELEASE = "gas_release"
    FIRE = "fire"
    PERSON_DOWN = "person_down"
    INTRUSION = "intrusion"
    PPE_VIOLATION = "ppe_violation"
    EQUIPMENT_FAULT = "equipment_fault"
    COMM_LOSS = "comm_loss"
    ALARM_FLOOD = "alarm_flood"


class Severity(enum.StrEnum):
    """CAP 1.2 `severity`, in rising order of harm."""

    UNKNOWN = "Unknown"
    MINOR = "Minor"
    MODERATE = "Moderate"
    SEVERE = "Severe"
    EXTREME = "Extreme"

    @property
    def rank(self) -> int:
        return _SEVERITY_ORDER.index(self)

    def raised(self) -> Severity:
        """One step more severe, Extreme at most (Unknown stays Unknown: nothing to raise)."""
        if self is Severity.UNKNOWN:
            return self
        return _SEVERITY_ORDER[min(self.rank + 1, len(_SEVERITY_ORDER) - 1)]


_SEVERITY_ORDER = (Severity.UNKNOWN, Severity.MINOR, Severity.MODERATE, Severity.SEVERE, Severity.EXTREME)


class Urgency(enum.StrEnum):
    """CAP 1.2 `urgency`."""

    IMMEDIATE = "Immediate"
    EXPECTED = "Expected"
    FUTURE = "Future"
    PAST = "Past"
    UNKNOWN = "Unknown"


class Certainty(enum.StrEnum):
    """CAP 1.2 `certainty`, in rising order of confidence."""

    UNKNOWN = "Unknown"
    UNLIKELY = "Unlikely"
    POSSIBLE = "Possible"
    LIKELY = "Likely"
    OBSERVED = "Observed"


class Status(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    RESOLVED = "resolved"
    CLOSED = "closed"


# An alarm's priority as the severity of the happening it signals.
SEVERITY_OF_PRIORITY: dict[Priority, Severity] = {
    Priority.LOW: Severity.MINOR,
    Priority.MEDIUM: Severity.MODERATE,
    Priority.HIGH: Severity.SEVERE,
    Priority.EMERGENCY: Severity.EXTREME,
}


class Text(msgspec.Struct, frozen=True, kw_only=True):
    """One text in Korean and English."""

    ko: str
    en: str


class Signal(msgspec.Struct, frozen=True, kw_only=True):
    """One alarm activation or return, as fusion reads it: the alarm transition with where its
    device stands and what it measures (from the site registry and the alarm rules)."""

    id: str  # the alarm transition's message id: what makes a redelivery recognisable
    tenant: str
    site: str
    alarm_id: str
    device: str
    rule: str
    kind: str | None  # the measured kind; None when unknown (a removed rule)
    zone: str | None
    position: tuple[float, float] | None  # WGS 84 lat, lon of the device
    alarm_class: AlarmClass
    priority: Priority
    condition: ConditionType
    active: bool  # True: the alarm became active; False: it returned to normal
    at: datetime
    confirmed: bool = False  # a voting group's alarm: M of N members agree
    action: Text | None = None  # the rule's operator action (master alarm database)
    correlation_id: str = ""
    # The alarm's snapshot reference (the detection that raised it); empty when none.
    snapshot: str = ""

    @property
    def source(self) -> str:
        """The sensing principle: cameras see, detectors measure (cross-source confirmation
        needs two principles)."""
        return "camera" if seen_by_camera(self.kind) else "sensor"
