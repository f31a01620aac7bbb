"""The ISA-18.2 / IEC 62682 performance figures of one site's alarm system over a window. Pure.

What an alarm management review looks at: how many alarms an operator was given (per day, hour
and 10 minutes, on average and at the worst), how often the site was flooded, which few alarms make
most of the noise, which alarms misbehave (chattering, fleeting, stale), whether priorities mean
something, and how many alarms are hidden from the operator (shelved, suppressed, out of service).
Each figure comes with its target. The targets, per operator position over at least 30 days
(ISA-18.2-2016 §16.5 table 16 and EEMUA 191, as summarised in the project's references):

- activations: ~150 a day acceptable, ~300 the most manageable; ~6 / ~12 an hour; ~1 / ~2 in
  10 minutes; at most 10 in any 10 minutes (EEMUA 191: "no more than ten in the first ten minutes
  after a major upset");
- fewer than ~1 % of 10-minute intervals with more than 10 activations; ~1 % of the time in flood;
- the 10 most frequent alarms: ~1 % of the load, 5 % at most;
- chattering (more than 5 transitions in 5 minutes) and fleeting (UNACK back to normal in under
  10 s) alarms: zero;
- stale alarms (standing, active for more than 24 hours): fewer than 5;
- priorities of the activations: ~80 % low, ~15 % medium, ~5 % high, under 1 % emergency;
- shelved, suppressed and out-of-service alarms: no number, but every one authorised and audited
  (§16.4): counted, so a review sees them.

Windows: activations count from `start` (included) to `end` (excluded). Averages divide by the
window's exact length, so a 6-hour window with 30 activations runs at 120 a day. Peaks are the
largest count in one clock interval (a calendar day in the site's time zone, a clock hour, a clock
10 minutes) that overlaps the window; an interval cut by the window's edge counts only what falls
inside, so a peak is never inflated by alarms outside the window. The share of 10-minute intervals
above 10 is over every clock 10-minute interval the window overlaps, cut ones included.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from services.alarms.domain.model import Priority

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
TEN_MINUTES = timedelta(minutes=10)
# A standing alarm active longer than this is stale (ISA-18.2: "active more than 24 hours").
STALE_AFTER = timedelta(hours=24)
# "More than 10 alarms in 10 minutes": an interval above this is a flood interval.
INTERVAL_ABOVE = 10
TOP = 10

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Status(enum.StrEnum):
    """Where a figure stands against its target."""

    ACCEPTABLE = "acceptable"  # at or under the acceptable figure
    MANAGEABLE = "manageable"  # over it, but at or under the maximum
    OVER = "over"  # over the maximum


@dataclass(frozen=True, slots=True)
class Target:
    """An ISA-18.2 target: the acceptable figure and the most that is manageable (equal when the
    standard names one bound)."""

    acceptable: float
    maximum: float

    def judge(self, value: float) -> Status:
        if value <= self.acceptable:
            return Status.ACCEPTABLE
        return Status.MANAGEABLE if value <= self.maximum else Status.OVER


PER_DAY = Target(150, 300)
PER_HOUR = Target(6, 12)
PER_10_MINUTES = Target(1, 2)
PEAK_10_MINUTES = Target(10, 10)
INTERVALS_ABOVE_10_PCT = Target(1, 1)
FLOOD_TIME_PCT = Target(1, 1)
TOP10_SHARE_PCT = Target(1, 5)
CHATTERING = Target(0, 0)
FLEETING = Target(0, 0)
STALE = Target(4, 4)  # "fewer than 5"
PRIORITY_MIX_PCT: Mapping[Priority, float] = {
    Priority.LOW: 80.0,
    Priority.MEDIUM: 15.0,
    Priority.HIGH: 5.0,
    Priority.EMERGENCY: 1.0,  # "under 1 %"
}


# ---------------------------------------------------------------- input: the rows of a window


@dataclass(frozen=True, slots=True)
class Activation:
    """An alarm presented anew to the operator (a transition counted as an activation)."""

    alarm_id: str
    priority: Priority
    at: datetime


@dataclass(frozen=True, slots=True)
class Flood:
    """One flood of the site; `ended_at` None while it lasts."""

    began_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class PointAtEnd:
    """One alarm point as the window leaves it: its state, and since when it has been active
    (its latest activation) if it is."""

    alarm_id: str
    state: str  # AlarmState value
    active_since: datetime | None


@dataclass(frozen=True, slots=True)
class KpiWindow:
    """What the figures are computed from: the rows of one site for [start, end)."""

    start: datetime
    end: datetime
    activations: Sequence[Activation]
    floods: Sequence[Flood]
    # Alarm ids with a transition in the window flagged so (each alarm counted once).
    chattering: frozenset[str]
    fleeting: frozenset[str]
    points: Sequence[PointAtEnd]
    zone: tzinfo = UTC  # the site's time zone: where its days begin


# ---------------------------------------------------------------- output: the figures


@dataclass(frozen=True, slots=True)
class Rate:
    """Activations per interval: the average over the window and the busiest interval."""

    average: float
    peak: int
    target: Target
    status: Status
    peak_target: Target | None = None
    peak_status: Status | None = None


@dataclass(frozen=True, slots=True)
class Judged:
    """One figure and its target."""

    value: float
    target: Target
    status: Status


@dataclass(frozen=True, slots=True)
class Frequent:
    alarm_id: str
    activations: int
    share_pct: float


@dataclass(frozen=True, slots=True)
class PriorityShare:
    priority: Priority
    activations: int
    share_pct: float
    target_pct: float


@dataclass(frozen=True, slots=True)
class Kpis:
    start: datetime
    end: datetime
    activations: int
    per_day: Rate
    per_hour: Rate
    per_10_minutes: Rate
    intervals_above_10_pct: Judged
    flood_time_pct: Judged
    top10: tuple[Frequent, ...]
    top10_share_pct: Judged
    chattering: Judged
    fleeting: Judged
    stale: Judged
    priorities: tuple[PriorityShare, ...]
    shelved: int
    suppressed: int
    out_of_service: int


# ---------------------------------------------------------------- computing them


def compute(window: KpiWindow) -> Kpis:
    """The figures of `window`. Raises ValueError if the window is empty or reversed."""
    start, end = window.start, window.end
    if end <= start:
        raise ValueError("the window must end after it starts")
    inside = [a for a in window.activations if start <= a.at < end]
    times = [a.at for a in inside]
    total = len(inside)
    span = end - start

    ten_minute = Counter(_clock_bucket(t, TEN_MINUTES) for t in times)
    intervals = _clock_buckets_overlapping(start, end, TEN_MINUTES)
    above = sum(1 for count in ten_minute.values() if count > INTERVAL_ABOVE)

    by_alarm = Counter(a.alarm_id for a in inside)
    # Most frequent first; ties by alarm id, so the answer is the same every time.
    ranked = sorted(by_alarm.items(), key=lambda item: (-item[1], item[0]))[:TOP]
    top = tuple(Frequent(alarm, count, _pct(count, total)) for alarm, count in ranked)
    top_share = _pct(sum(f.activations for f in top), total)

    by_priority = Counter(a.priority for a in inside)
    priorities = tuple(
        PriorityShare(p, by_priority[p], _pct(by_priority[p], total), PRIORITY_MIX_PCT[p]) for p in Priority
    )
    stale = sum(
        1
        for p in window.points
        if p.state in ("UNACK", "ACKED") and p.active_since is not None and end - p.active_since > STALE_AFTER
    )
    states = Counter(p.state for p in window.points)
    flooded = sum((_overlap(f, start, end) for f in window.floods), timedelta(0))

    return Kpis(
        start=start,
        end=end,
        activations=total,
        per_day=_rate(total, span, DAY, Counter(local_day(t, window.zone) for t in times).values(), PER_DAY),
        per_hour=_rate(total, span, HOUR, Counter(_clock_bucket(t, HOUR) for t in times).values(), PER_HOUR),
        per_10_minutes=_rate(
            total, span, TEN_MINUTES, ten_minute.values(), PER_10_MINUTES, peak_target=PEAK_10_MINUTES
        ),
        intervals_above_10_pct=_judged(_pct(above, intervals), INTERVALS_ABOVE_10_PCT),
        flood_time_pct=_judged(round(100 * (flooded / span), 3), FLOOD_TIME_PCT),
        top10=top,
        top10_share_pct=_judged(top_share, TOP10_SHARE_PCT),
        chattering=_judged(len(window.chattering), CHATTERING),
        fleeting=_judged(len(window.fleeting), FLEETING),
        stale=_judged(stale, STALE),
        priorities=priorities,
        shelved=states["SHLVD"],
        suppressed=states["DSUPR"],
        out_of_service=states["OOSRV"],
    )


def _rate(
    total: int,
    span: timedelta,
    interval: timedelta,
    counts: Iterable[int],
    target: Target,
    *,
    peak_target: Target | None = None,
) -> Rate:
    average = round(total * (interval / span), 3)
    peak = max(counts, default=0)
    return Rate(
        average=average,
        peak=peak,
        target=target,
        status=target.judge(average),
        peak_target=peak_target,
        peak_status=peak_target.judge(peak) if peak_target is not None else None,
    )


def _judged(value: float, target: Target) -> Judged:
    return Judged(value, target, target.judge(value))


def _pct(part: int, whole: int) -> float:
    return round(100 * part / whole, 3) if whole else 0.0


def _clock_bucket(at: datetime, size: timedelta) -> int:
    """The clock interval of `size` holding `at`, as its index since the epoch (UTC): clock hours
    and 10 minutes are the local ones wherever the zone's offset is a whole hour."""
    return (at - _EPOCH) // size


def _clock_buckets_overlapping(start: datetime, end: datetime, size: timedelta) -> int:
    """How many clock intervals of `size` the window [start, end) overlaps."""
    return _clock_bucket(end - timedelta(microseconds=1), size) - _clock_bucket(start, size) + 1


def _overlap(flood: Flood, start: datetime, end: datetime) -> timedelta:
    # A flood still going counts to the window's end: the caller ends the window at "now" at most.
    began = max(flood.began_at, start)
    ended = min(flood.ended_at or end, end)
    return max(ended - began, timedelta(0))


def local_day(at: datetime, zone: tzinfo) -> date:
    """The calendar day of `at` at the site (days are the operators', not UTC's)."""
    return at.astimezone(zone).date()
