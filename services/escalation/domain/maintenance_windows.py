"""Maintenance windows as data, and their schedules as functions of time.

A window has a scope (a site, or one zone of it), a time zone, and a schedule: one-off (start,
end), an RFC 5545 RRULE with its DTSTART and a duration, or a 5-field cron expression with a
duration. Recurrences are computed in the window's own time zone, so "Saturdays 02:00 for 4
hours" stays at 02:00 local across a daylight-saving change (python-dateutil's rrule for RRULE;
cronsim for cron, which follows Debian cron across DST gaps and folds). The questions asked of
windows (is a notification muted, when does that change) are in `maintenance.py`.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from itertools import islice
from threading import Lock
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from cronsim import CronSim, CronSimError
from dateutil.rrule import rrule, rrulestr
from msgspec import Meta

from services.common.errors import SafetyhubError
from services.common.types import Slug

# Occurrences examined in one walk before giving up (a window that, in effect, never ends).
MAX_STEPS = 10_000
# Windows recurring faster than hourly are refused: nobody maintains a plant every minute, and
# the walks below would be long.
_TOO_FREQUENT = ("SECONDLY", "MINUTELY")
_FREQ = re.compile(r"(?:^|;)FREQ=([A-Z]+)(?:;|$)")
_INTERVAL = re.compile(r"(?:^|;)INTERVAL=([^;]*)")
_TINY = timedelta(microseconds=1)


class InvalidWindow(SafetyhubError, ValueError):
    """A maintenance window that cannot be used; `field` names the offending field ("schedule.rrule")."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class OneOff(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="once", tag_field="kind"
):
    """From `start` (inclusive) to `end` (exclusive); a time without offset is in the window's zone."""

    start: datetime
    end: datetime


class RRule(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="rrule", tag_field="kind"
):
    """RFC 5545: `rrule` is the rule's value ("FREQ=WEEKLY;BYDAY=SA"), `dtstart` its first start
    (without offset: wall time in the window's zone), each occurrence lasting `duration`."""

    rrule: str
    dtstart: datetime
    duration: timedelta


class Cron(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="cron", tag_field="kind"
):
    """A 5-field cron expression ("0 22 * * 1-5") in the window's zone; each start lasts `duration`."""

    cron: str
    duration: timedelta


Schedule = OneOff | RRule | Cron
WindowId = Annotated[str, Meta(min_length=1, max_length=128)]


class MaintenanceWindow(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A maintenance window of one site (all its zones when `zone` is None), of one tenant.

    `timezone`: the IANA zone its schedule is written in (Asia/Seoul for a Korean site, taken
    from the site or the tenant's configuration by the caller).
    """

    id: WindowId
    site: Slug
    timezone: Annotated[str, Meta(min_length=1)]
    schedule: Schedule
    zone: Slug | None = None
    reason: Annotated[str, Meta(max_length=1000)] = ""


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One stretch of time a window mutes, start inclusive, end exclusive."""

    window: MaintenanceWindow
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Stretch:
    """Occurrences of one window that overlap or touch, merged: what it mutes without a break.
    `end` None: it goes on past the horizon asked about."""

    start: datetime
    end: datetime | None


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A schedule as functions of time: the latest start at or before a moment, and the starts
    after it, in order."""

    duration: timedelta
    latest_start: Callable[[datetime], datetime | None]
    starts_after: Callable[[datetime], Iterator[datetime]]


def time_zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise InvalidWindow("timezone", f"unknown time zone {name!r} (an IANA name: Asia/Seoul)") from err


def aware(moment: datetime, zone: tzinfo) -> datetime:
    """A moment in `zone`: a wall time without offset is read as `zone`'s."""
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment.astimezone(zone)


@lru_cache(maxsize=512)
def compile_schedule(window: MaintenanceWindow) -> _Compiled:
    """The window's schedule, parsed once (InvalidWindow if it cannot be).

    Starts are computed in the window's zone (wall time) but given, and asked about, in UTC:
    Python adds and compares two times of one zone by wall clock, which across a DST change
    would make "4 hours" last 3 or 5, and an hour of the autumn fold compare wrongly.
    Cached per window (frozen, so hashable; equal windows decoded twice share one entry), which
    also keeps a rule's computed starts.
    """
    zone = time_zone(window.timezone)
    schedule = window.schedule
    if isinstance(schedule, OneOff):
        start, end = _utc(aware(schedule.start, zone)), _utc(aware(schedule.end, zone))

        def once_latest(at: datetime) -> datetime | None:
            return start if start <= at else None

        def once_after(at: datetime) -> Iterator[datetime]:
            return iter((start,) if start > at else ())

        return _Compiled(end - start, once_latest, once_after)
    if isinstance(schedule, RRule):
        starts = _Starts(_rrule(schedule, zone))
        return _Compiled(schedule.duration, starts.latest, starts.after)
    expression = _cron(schedule.cron)

    def cron_latest(at: datetime) -> datetime | None:
        # cronsim walks back from strictly before its start: a microsecond later lets a start at
        # exactly `at` count (cron starts fall on whole minutes).
        found = next(CronSim(expression, (at + _TINY).astimezone(zone), reverse=True), None)
        return None if found is None else _utc(found)

    def cron_after(at: datetime) -> Iterator[datetime]:
        return (_utc(start) for start in CronSim(expression, at.astimezone(zone)))

    return _Compiled(schedule.duration, cron_latest, cron_after)


class _Starts:
    """A rule's starts in UTC, each computed once, in order, and looked up by bisection.

    dateutil answers "the latest start before t" by walking from DTSTART every time: years of
    weekly windows would be walked at every notification. Here the walk is done once and kept
    (as far as the latest moment asked about), behind a lock for callers on several threads.
    """

    def __init__(self, rule: rrule) -> None:
        self._source: Iterator[datetime] = iter(rule)
        self._known: list[datetime] = []
        self._exhausted = False
        self._lock = Lock()

    def latest(self, at: datetime) -> datetime | None:
        """The latest start at or before `at`."""
        self._reach(at)
        index = bisect_right(self._known, at)
        return self._known[index - 1] if index else None

    def after(self, at: datetime) -> Iterator[datetime]:
        """The starts after `at`, in order, for as long as the caller asks."""
        self._reach(at)
        index = bisect_right(self._known, at)
        while index < len(self._known) or self._grow():
            yield self._known[index]
            index += 1

    def _reach(self, at: datetime) -> None:
        while (not self._known or self._known[-1] <= at) and self._grow():
            pass

    def _grow(self) -> bool:
        with self._lock:
            if self._exhausted:
                return False
            for start in self._source:
                moment = _utc(start)
                # A wall time in a spring-forward gap can land on, or after, the next real one
                # (02:30 read at winter offset): kept once and in order, so bisection holds.
                if not self._known or moment > self._known[-1]:
                    self._known.append(moment)
                    return True
            self._exhausted = True
            return False


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _rrule(schedule: RRule, zone: tzinfo) -> rrule:
    field = "schedule.rrule"
    value = schedule.rrule.strip().removeprefix("RRULE:").removeprefix("rrule:")
    if not value or any(c in value for c in "\r\n") or "DTSTART" in value.upper():
        raise InvalidWindow(
            field, "one RRULE value (FREQ=WEEKLY;BYDAY=SA); the start goes in schedule.dtstart"
        )
    freq = _FREQ.search(value.upper())
    if freq is None:
        raise InvalidWindow(field, "FREQ is missing (FREQ=DAILY, WEEKLY, MONTHLY, ...)")
    if freq.group(1) in _TOO_FREQUENT:
        raise InvalidWindow(field, "a maintenance window recurs at most hourly")
    interval = _INTERVAL.search(value.upper())
    if interval is not None and not (interval.group(1).isdigit() and int(interval.group(1)) > 0):
        # dateutil takes INTERVAL=0 and would never get past the first occurrence.
        raise InvalidWindow(field, "INTERVAL must be a positive whole number")
    try:
        parsed = rrulestr(value, dtstart=aware(schedule.dtstart, zone))
    except (ValueError, TypeError, KeyError, IndexError) as err:
        raise InvalidWindow(field, f"not an RFC 5545 RRULE: {err or type(err).__name__}") from err
    if not isinstance(parsed, rrule):
        raise InvalidWindow(field, "one RRULE, not a set")
    return parsed


def _cron(expression: str) -> str:
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidWindow("schedule.cron", f"5 fields (minute hour day month weekday), not {len(fields)}")
    if not fields[0].isdigit():
        # One minute of the hour: a list, range or step there would start windows more often.
        raise InvalidWindow(
            "schedule.cron", "a maintenance window recurs at most hourly: the minute is one number"
        )
    text = " ".join(fields)
    try:
        CronSim(text, datetime(2000, 1, 1))
    except CronSimError as err:
        raise InvalidWindow("schedule.cron", f"not a cron expression: {err}") from err
    return text


def current(window: MaintenanceWindow, at: datetime) -> Occurrence | None:
    """The window's occurrence running at `at`, if any (its times in UTC)."""
    at = _utc(at)
    compiled = compile_schedule(window)
    start = compiled.latest_start(at)
    if start is None or at >= start + compiled.duration:
        # The latest start decides: an earlier occurrence still running ends before it does.
        return None
    return Occurrence(window, start, start + compiled.duration)


def occurrences(window: MaintenanceWindow, at: datetime) -> Iterator[Occurrence]:
    """The occurrence running at `at` if any, then those starting after it, in order (in UTC)."""
    at = _utc(at)
    running = current(window, at)
    if running is not None:
        yield running
    compiled = compile_schedule(window)
    for start in compiled.starts_after(at):
        yield Occurrence(window, start, start + compiled.duration)


def stretches(window: MaintenanceWindow, at: datetime, limit: datetime) -> Iterator[Stretch]:
    """The window's stretches ending after `at` and starting by `limit`, in order (in UTC)."""
    at, limit = _utc(at), _utc(limit)
    start: datetime | None = None
    end = at
    walked = 0
    for occurrence in islice(occurrences(window, at), MAX_STEPS):
        walked += 1
        if start is not None and occurrence.start <= end:
            end = max(end, occurrence.end)
        else:
            if start is not None:
                yield Stretch(start, end)
            if occurrence.start > limit:
                return
            start, end = occurrence.start, occurrence.end
        if end > limit:
            yield Stretch(start, None)
            return
    if start is not None:
        # Stopped by MAX_STEPS while still merging: where it ends is not known.
        yield Stretch(start, None if walked == MAX_STEPS else end)
