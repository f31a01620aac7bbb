"""Whether one notification about one incident is held back by maintenance. Pure: time is a
parameter.

A notification (an opening, a climb's step or repeat, any later change delivered) about a
non-safety incident whose site, or every zone it spans, is in an active maintenance window is
held: recorded as `muted`, not sent. Never held: anything about a safety-class incident, and the
resolution (or closing), which reaches every endpoint that heard of the incident, always.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.escalation.domain.maintenance import (
    MaintenanceWindow,
    active_windows,
    is_muted,
    next_change,
)

# Changes that are always delivered, maintenance or not: the end of an incident.
NEVER_HELD = frozenset({"resolved", "closed"})
# Incident types that are safety-class whatever their alarms say (gas, fire, person down: as the
# alarm classes call safety): a maintenance window never silences them.
SAFETY_TYPES = frozenset({"gas_release", "fire", "person_down"})
# How far ahead the end of a muting is looked for. A held incident is looked at again then at the
# latest (no harm in looking early); a year ahead over dozens of recurring windows would take a
# consumer's batch hundreds of milliseconds per incident.
LOOK_AHEAD = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Subject:
    """What muting needs of an incident: where it is and whether it is safety-class."""

    site: str
    zones: tuple[str, ...]
    safety_class: bool


@dataclass(frozen=True, slots=True)
class Held:
    """A notification held back: by which windows, and when the muting ends (None: not within
    LOOK_AHEAD)."""

    windows: tuple[str, ...]
    until: datetime | None

    @property
    def reason(self) -> str:
        names = ", ".join(self.windows)
        until = f"until {self.until.isoformat()}" if self.until is not None else "for a day or more"
        return f"muted by maintenance window {names} {until}"

    def look_again(self, at: datetime) -> datetime:
        """When the held incident's timer is due: the end of the muting, or LOOK_AHEAD on."""
        return self.until if self.until is not None else at + LOOK_AHEAD


def hold(windows: Sequence[MaintenanceWindow], subject: Subject, change: str, at: datetime) -> Held | None:
    """Held if the notification of `change` at `at` is muted; None if it goes out."""
    if change in NEVER_HELD or subject.safety_class:
        return None
    if not is_muted(windows, site=subject.site, zone=subject.zones, safety_class=False, at=at):
        return None
    running = active_windows(windows, subject.site, subject.zones, at)
    until = next_change(
        windows, site=subject.site, zone=subject.zones, safety_class=False, at=at, horizon=LOOK_AHEAD
    )
    return Held(tuple(sorted({o.window.id for o in running})), until)


def safety_class(incident_type: str, alarm_classes: Sequence[str]) -> bool:
    """An incident is safety-class by its type or by any of its alarms."""
    return incident_type in SAFETY_TYPES or "safety" in alarm_classes
