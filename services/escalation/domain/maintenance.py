"""Maintenance windows: when a site's or a zone's non-safety notifications are muted.

The windows themselves (one-off, RRULE or cron, per site or zone, in a time zone) are data, in
`maintenance_windows.py`. Every function here takes the time as a parameter and does no I/O: the
escalation service asks `is_muted` before notifying, stores `next_change` and `next_reminder` as
due times of its timer rows, and sends what `reminders_due` returns when one is due. An
occurrence is active from its start (inclusive) to its end (exclusive). Safety-class incidents
are never muted, whatever the windows say.

Windows given to the queries are expected to have passed `check_window` (as `decode_window`
does); one that cannot be parsed raises InvalidWindow there too.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby

import msgspec

from services.escalation.domain.maintenance_windows import (
    Cron,
    InvalidWindow,
    MaintenanceWindow,
    Occurrence,
    OneOff,
    RRule,
    Schedule,
    aware,
    compile_schedule,
    current,
    stretches,
    time_zone,
)

_NAMED_FIELD = re.compile(r"Object (contains unknown|missing required) field `(.+)`")
# How far `next_change` and `next_reminder` look ahead: a scheduler that gets None asks again then.
DEFAULT_HORIZON = timedelta(days=366)

# A zone, several (an incident spanning zones), or None (an incident placed in no zone).
Zones = str | Iterable[str] | None
# A site's zone ids, or None for a site the caller does not know (or of another tenant).
ZonesOf = Callable[[str], Collection[str] | None]


@dataclass(frozen=True, slots=True)
class Reminder:
    """A window's muting ends at `expires`; people are told from `due` on.

    (window.id, expires) names it: a scheduler that stores what it sent sends each once.
    """

    window: MaintenanceWindow
    due: datetime
    expires: datetime


# ------------------------------------------------------------------------------------- checks


def decode_window(raw: bytes | str, *, zones_of: ZonesOf | None = None) -> MaintenanceWindow:
    """A window from JSON, checked by `check_window`; InvalidWindow names the field otherwise."""
    try:
        window = msgspec.json.decode(raw, type=MaintenanceWindow)
    except msgspec.ValidationError as err:
        raise InvalidWindow(*_field_of(str(err))) from err
    except msgspec.DecodeError as err:
        raise InvalidWindow("", f"not JSON: {err}") from err
    check_window(window, zones_of=zones_of)
    return window


def _field_of(error: str) -> tuple[str, str]:
    """msgspec's "Expected `str`, got `int` - at `$.schedule.rrule`" as ("schedule.rrule", ...)."""
    message, _, path = error.partition(" - at `$")
    field = path.rstrip("`").lstrip(".")
    named = _NAMED_FIELD.fullmatch(message)
    if named is not None:  # the field is named in the message, not in the path
        field = f"{field}.{named.group(2)}" if field else named.group(2)
        message = "unknown field" if named.group(1) == "contains unknown" else "required"
    return field, message


def check_window(window: MaintenanceWindow, *, zones_of: ZonesOf | None = None) -> None:
    """Raise InvalidWindow naming the first field that is wrong.

    `zones_of(site)`: the site's zone ids, or None for a site the caller does not know (for
    instance one of another tenant); without it, site and zone are not checked against a registry.
    """
    if zones_of is not None:
        zones = zones_of(window.site)
        if zones is None:
            raise InvalidWindow("site", f"unknown site {window.site!r}")
        if window.zone is not None and window.zone not in zones:
            raise InvalidWindow("zone", f"site {window.site!r} has no zone {window.zone!r}")
    zone = time_zone(window.timezone)
    schedule = window.schedule
    if isinstance(schedule, OneOff):
        if aware(schedule.end, zone) <= aware(schedule.start, zone):
            raise InvalidWindow("schedule.end", "must be after schedule.start")
    elif schedule.duration <= timedelta(0):
        raise InvalidWindow("schedule.duration", "must be positive")
    compile_schedule(window)


# ------------------------------------------------------------------------------------ queries


def active_windows(
    windows: Sequence[MaintenanceWindow], site: str, zone: Zones, at: datetime
) -> list[Occurrence]:
    """The occurrences running at `at` of the windows of `site` that cover `zone`: site-wide
    windows, and the windows of the zone (or of any of the zones)."""
    at = _need_aware(at)
    found = []
    for window in _of_scope(windows, site, _zone_set(zone)):
        running = current(window, at)
        if running is not None:
            found.append(running)
    return found


def is_muted(
    windows: Sequence[MaintenanceWindow], *, site: str, zone: Zones, safety_class: bool, at: datetime
) -> bool:
    """Whether a notification about an incident of `site` in `zone` is held back at `at`.

    Never for a safety-class incident. An incident spanning several zones is muted only when
    every one of them is in maintenance: a gas release reaching a live unit must be heard.
    An incident in no zone is muted only by a site-wide window.
    """
    at = _need_aware(at)
    if safety_class:
        return False
    zones = _zone_set(zone)  # once: `zone` may be an iterator
    running = [o.window for o in active_windows(windows, site, zones, at)]
    return _muted(running, zones)


def next_change(
    windows: Sequence[MaintenanceWindow],
    *,
    site: str,
    zone: Zones,
    safety_class: bool,
    at: datetime,
    horizon: timedelta = DEFAULT_HORIZON,
) -> datetime | None:
    """The first moment after `at` when `is_muted` gives another answer; None when it does not
    change within `horizon` (never, for a safety-class incident).

    A scheduler stores it as the due time at which to re-evaluate held notifications.
    """
    at = _need_aware(at)
    if safety_class:
        return None
    zones, limit = _zone_set(zone), at + horizon
    mine = list(_of_scope(windows, site, zones))
    # A sweep over the moments windows switch on (+1) and off (-1), grouped by moment: an end and
    # a start at the same moment (end exclusive, start inclusive) leave the window on.
    active = [0] * len(mine)
    streams = []
    for index, window in enumerate(mine):
        events: list[tuple[datetime, int, int]] = []
        for stretch in stretches(window, at, limit):
            if stretch.start <= at:
                active[index] += 1
            else:
                events.append((stretch.start, index, +1))
            if stretch.end is not None:
                events.append((stretch.end, index, -1))
        streams.append(events)
    now = _muted([w for w, on in zip(mine, active, strict=True) if on], zones)
    merged = heapq.merge(*streams, key=_moment)
    for moment, group in groupby(merged, key=_moment):
        if moment > limit:
            return None
        for _, index, step in group:
            active[index] += step
        if _muted([w for w, on in zip(mine, active, strict=True) if on], zones) != now:
            return moment
    return None


def reminders_due(
    windows: Sequence[MaintenanceWindow],
    at: datetime,
    lead: timedelta,
    *,
    horizon: timedelta = DEFAULT_HORIZON,
) -> list[Reminder]:
    """The windows whose muting ends within `lead` after `at`: remind people it is about to expire.

    Due from `lead` before the end (or from the start, for a window shorter than `lead`) until
    the end. A recurrence that runs straight into its next occurrence is not ending until the
    last of them ends.
    """
    at = _need_aware(at)
    _need_lead(lead)
    due = []
    for window in windows:
        stretch = next(stretches(window, at, at + horizon), None)
        if stretch is None or stretch.start > at or stretch.end is None:
            continue
        reminder = _reminder(window, stretch.start, stretch.end, lead)
        if reminder.due <= at:
            due.append(reminder)
    return due


def next_reminder(
    windows: Sequence[MaintenanceWindow],
    at: datetime,
    lead: timedelta,
    *,
    horizon: timedelta = DEFAULT_HORIZON,
) -> datetime | None:
    """The first moment after `at` when a reminder becomes due; None within `horizon`.

    A scheduler stores it as a due time, then sends `reminders_due` at it.
    """
    at = _need_aware(at)
    _need_lead(lead)
    limit = at + horizon
    dues = []
    for window in windows:
        for stretch in stretches(window, at, limit):
            if stretch.end is None:
                break
            reminder = _reminder(window, stretch.start, stretch.end, lead)
            if reminder.due > at:
                dues.append(reminder.due)
                break
    best = min(dues, default=None)
    return best if best is not None and best <= limit else None


def _moment(event: tuple[datetime, int, int]) -> datetime:
    return event[0]


def _reminder(window: MaintenanceWindow, start: datetime, end: datetime, lead: timedelta) -> Reminder:
    return Reminder(window, max(start, end - lead), end)


def _of_scope(
    windows: Iterable[MaintenanceWindow], site: str, zones: frozenset[str]
) -> Iterator[MaintenanceWindow]:
    return (w for w in windows if w.site == site and (w.zone is None or w.zone in zones))


def _muted(running: Iterable[MaintenanceWindow], zones: frozenset[str]) -> bool:
    covered = set()
    for window in running:
        if window.zone is None:
            return True
        covered.add(window.zone)
    return bool(zones) and zones <= covered


def _zone_set(zone: Zones) -> frozenset[str]:
    if zone is None:
        return frozenset()
    if isinstance(zone, str):
        return frozenset((zone,))
    return frozenset(zone)


def _need_aware(at: datetime) -> datetime:
    """`at` in UTC, where adding and comparing times is exact (see compile_schedule)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("`at` must be timezone-aware")
    return at.astimezone(UTC)


def _need_lead(lead: timedelta) -> None:
    if lead <= timedelta(0):
        raise ValueError("`lead` must be positive")


__all__ = [
    "DEFAULT_HORIZON",
    "Cron",
    "InvalidWindow",
    "MaintenanceWindow",
    "Occurrence",
    "OneOff",
    "RRule",
    "Reminder",
    "Schedule",
    "Zones",
    "active_windows",
    "check_window",
    "decode_window",
    "is_muted",
    "next_change",
    "next_reminder",
    "reminders_due",
]
