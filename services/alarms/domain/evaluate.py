"""Whether an alarm point's condition is active, and when it changed. Pure: time is a parameter.

One alarm point is one rule on one device. Its `ConditionState` is immutable; `apply` takes one
observation and returns the next state with the changes it caused (the condition became active
or inactive, at which time, caused by which observation ids). What the alarm then does (UNACK,
ACKED, shelving...) is the state machine's business, not this module's.

Timers are data, never sleeping coroutines: a pending on-delay or off-delay, the time a point goes
stale, the end of a detection's persistence window are a due time in the state. `next_due(state)`
says when the caller must call `on_timer(rule, state, now)`; a timer fires *at its due time*, also
when it is only noticed later (after a restart, or when the next observation arrives past it).

Semantics, where ISA-18.2 leaves a choice:
- high / high_high / rate_of_rise activate at value >= set-point and clear only below
  set-point - deadband; low / low_low activate at value <= set-point and clear only above
  set-point + deadband. Inside the deadband the condition keeps what it was.
- A reading of bad quality (a device fault, or a value ingest found outside the device's range)
  never drives a value or detection condition: it neither raises nor clears them, and a pending
  delay keeps running. It raises the bad_quality condition, which a good reading clears. A reading
  of uncertain quality is used for values (a missed gas alarm costs more than a doubtful one) and
  leaves bad_quality as it is.
- rate_of_rise is the change per minute between the current reading and the oldest kept reading of
  the last minute (readings kept at least 5 s apart, so at most 13); when readings are further
  apart than a minute, between consecutive readings.
- stale: no observation (of any quality) for `stale_after` since the last one (or since the point
  was created) raises it at that time; any observation clears it at once.
- detection: `persistence_count` detections with confidence >= `min_confidence` within
  `persistence_window` raise it (the persistence is its on-delay); it clears when no qualifying
  detection came for the window plus the off-delay, or, when both are zero, at the next detection
  that does not qualify.
- Order: observations of one point are applied in time order. One older than the last applied
  is late: ignored (counted in `ignored`), so a redelivered batch, in any pattern, yields the same
  changes as the first delivery. One with the time of the last applied and an id already applied
  is a duplicate: nothing changes, not even the state object. The changes of one point never go
  back in time: a change is never dated before the previous one.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import NamedTuple

from services.alarms.domain.model import ConditionType, Rule

# Rate of rise: readings of the last minute, kept at least this far apart (bounded memory).
RATE_WINDOW = timedelta(minutes=1)
RATE_SPACING = timedelta(seconds=5)
# Distinct observations of one point at one and the same instant that are told apart; more is
# not a device reporting but a client repeating itself, and is ignored like a late observation.
MAX_SAME_INSTANT = 16

_MINUTE_S = 60.0


class Quality(enum.IntEnum):
    """An observation's quality, with the numbers of the bus contract's enum (unspecified is
    taken as uncertain: used for values, not a fault, not a recovery)."""

    UNSPECIFIED = 0
    GOOD = 1
    UNCERTAIN = 2
    BAD = 3


class Timer(enum.StrEnum):
    """Which timer made a change (the names `Transition.timer` carries)."""

    ON_DELAY = "on_delay"
    OFF_DELAY = "off_delay"
    STALE = "stale"
    DETECTION_WINDOW = "detection_window"


# Named tuples rather than frozen dataclasses: as immutable and typed, and built several times
# faster (a frozen dataclass sets each field through object.__setattr__), which counts at tens
# of thousands of observations a second.
class Sample(NamedTuple):
    """What evaluation needs of one observation of the point's device and kind."""

    id: str
    at: datetime
    value: float | None = None
    confidence: float | None = None
    quality: int = Quality.GOOD  # a Quality, or the bus enum's number as it comes (the same numbers)


class Change(NamedTuple):
    """The condition became active (or inactive) at `at`: caused by these observations, or by a
    timer that fell due (then `timer` names it and the ids are those that started it)."""

    active: bool
    at: datetime
    observation_ids: tuple[str, ...]
    timer: Timer | None = None


class ConditionState(NamedTuple):
    """One point's condition. A pending change always goes to `not active`; `due` says when."""

    active: bool = False
    # The condition as the last reading shows it (with deadband), before on- and off-delays.
    raw: bool = False
    due: datetime | None = None
    pending_ids: tuple[str, ...] = ()
    last_at: datetime | None = None  # time of the last applied observation
    last_ids: tuple[str, ...] = ()  # ids applied at `last_at`: duplicates are recognised by them
    changed_at: datetime | None = None
    # rate_of_rise: (time, value) of kept readings; detection: (time, id) of the last qualifying.
    history: tuple[tuple[datetime, float], ...] = ()
    hits: tuple[tuple[datetime, str], ...] = ()
    ignored: int = 0  # late observations (older than the last applied one)


# Enum members as module constants: looking one up on its class costs more than the rest of a
# comparison in Python 3.11, and evaluation compares several per observation.
_BAD_QUALITY = ConditionType.BAD_QUALITY
_DETECTION = ConditionType.DETECTION
_LOW = ConditionType.LOW
_LOW_LOW = ConditionType.LOW_LOW
_RATE_OF_RISE = ConditionType.RATE_OF_RISE
_STALE = ConditionType.STALE
_BAD = Quality.BAD
_GOOD = Quality.GOOD
_DETECTION_WINDOW = Timer.DETECTION_WINDOW
_OFF_DELAY = Timer.OFF_DELAY
_ON_DELAY = Timer.ON_DELAY
_STALE_TIMER = Timer.STALE


def initial(rule: Rule, since: datetime) -> ConditionState:
    """A point as it starts to be watched at `since`: inactive; a stale rule is armed from then."""
    if rule.condition is _STALE and rule.stale_after is not None:
        return ConditionState(due=since + rule.stale_after)
    return ConditionState()


def next_due(state: ConditionState) -> datetime | None:
    """When `on_timer` must be called next (None: no timer pending)."""
    return state.due


def on_timer(rule: Rule, state: ConditionState, now: datetime) -> tuple[ConditionState, tuple[Change, ...]]:
    """Fire the pending change if it fell due by `now`; dated at its due time, not at `now`."""
    due = state.due
    if due is None or due > now:
        return state, ()
    return _fire(rule, state, due)


def apply(rule: Rule, state: ConditionState, sample: Sample) -> tuple[ConditionState, tuple[Change, ...]]:
    """Apply one observation. At most two changes: a timer that fell due before it, then its own."""
    at = sample.at
    last = state.last_at
    if last is None or at > last:
        last_ids: tuple[str, ...] = (sample.id,)
    elif at == last:
        if sample.id in state.last_ids:
            return state, ()
        if len(state.last_ids) >= MAX_SAME_INSTANT:
            return _ignore(state), ()
        last_ids = (*state.last_ids, sample.id)
    else:
        return _ignore(state), ()

    fired: tuple[Change, ...] = ()
    due = state.due
    if due is not None and due <= at:
        # It fell due before this observation, which is the first news since: the condition held.
        state, fired = _fire(rule, state, due)

    condition = rule.condition
    if condition is _STALE:
        state, own = _stale(rule, state, sample, last_ids)
    elif condition is _DETECTION:
        state, own = _detection(rule, state, sample, last_ids)
    elif condition is _BAD_QUALITY:
        quality = sample.quality
        raw = True if quality == _BAD else False if quality == _GOOD else None
        state, own = _delayed(rule, state, sample, last_ids, raw, history=state.history)
    elif condition is _RATE_OF_RISE:
        rate, history = _rate(state.history, sample)
        raw = _hysteresis(rule, state.raw, rate)
        state, own = _delayed(rule, state, sample, last_ids, raw, history=history)
    else:
        value = None if sample.quality == _BAD else sample.value
        raw = _hysteresis(rule, state.raw, value)
        state, own = _delayed(rule, state, sample, last_ids, raw, history=state.history)
    if fired:
        return state, fired + own
    return state, own


def only_progress(before: ConditionState, after: ConditionState) -> bool:
    """Whether `after` differs from `before` only in the record of what was applied (`last_at`,
    `last_ids`, `ignored`): the condition, its pending change and its timer are as they were."""
    # Slices of the tuple compare in C: (active, raw, due, pending_ids) and (changed_at, history, hits).
    return before[:4] == after[:4] and before[6:9] == after[6:9]


def _ignore(state: ConditionState) -> ConditionState:
    return ConditionState(
        state.active, state.raw, state.due, state.pending_ids, state.last_at, state.last_ids,
        state.changed_at, state.history, state.hits, state.ignored + 1,
    )  # fmt: skip


def _dated(state: ConditionState, at: datetime) -> datetime:
    # A point's changes never go back in time (an observation delayed past a fired timer).
    changed = state.changed_at
    return at if changed is None or at >= changed else changed


def _fire(rule: Rule, state: ConditionState, due: datetime) -> tuple[ConditionState, tuple[Change, ...]]:
    active = not state.active
    at = _dated(state, due)
    condition = rule.condition
    if condition is _STALE:
        timer = _STALE_TIMER
    elif condition is _DETECTION:
        timer = _DETECTION_WINDOW
    else:
        timer = _ON_DELAY if active else _OFF_DELAY
    change = Change(active, at, state.pending_ids, timer)
    raw = state.raw if condition is not _DETECTION else active
    new = ConditionState(
        active, raw, None, (), state.last_at, state.last_ids, at, state.history, state.hits, state.ignored
    )
    return new, (change,)


def _hysteresis(rule: Rule, raw: bool, value: float | None) -> bool | None:
    """The undelayed condition for `value`; None when the value says nothing."""
    setpoint = rule.setpoint
    if value is None or setpoint is None:
        return None
    condition = rule.condition
    if condition is _LOW or condition is _LOW_LOW:
        if value <= setpoint:
            return True
        return raw if value <= setpoint + rule.deadband else False
    if value >= setpoint:
        return True
    return raw if value >= setpoint - rule.deadband else False


def _rate(
    history: tuple[tuple[datetime, float], ...], sample: Sample
) -> tuple[float | None, tuple[tuple[datetime, float], ...]]:
    """Units per minute since the oldest kept reading of the last minute, and the kept readings."""
    value = sample.value
    if value is None or sample.quality == _BAD:
        return None, history
    at = sample.at
    cut = at - RATE_WINDOW
    start, count = 0, len(history)
    # Drop what left the window, but keep the latest reading as the reference when readings are
    # sparser than the window.
    while start < count - 1 and history[start][0] < cut:
        start += 1
    rate = None
    if count:
        then, before = history[start]
        seconds = (at - then).total_seconds()
        if seconds > 0:
            rate = (value - before) * _MINUTE_S / seconds
    kept = history[start:] if start else history
    if not kept or at - kept[-1][0] >= RATE_SPACING:
        kept = (*kept, (at, value))
    return rate, kept


def _delayed(
    rule: Rule,
    state: ConditionState,
    sample: Sample,
    last_ids: tuple[str, ...],
    raw: bool | None,
    *,
    history: tuple[tuple[datetime, float], ...],
) -> tuple[ConditionState, tuple[Change, ...]]:
    """Follow the undelayed condition `raw` through the on- and off-delays."""
    active = state.active
    if raw is None:  # no news: everything stays, a pending delay keeps running
        raw, due, pending_ids = state.raw, state.due, state.pending_ids
    elif raw is active:
        due, pending_ids = None, ()  # the reading breaks a pending change
    elif state.due is not None:
        due, pending_ids = state.due, state.pending_ids  # already on its way
    else:
        delay = rule.on_delay if raw else rule.off_delay
        if not delay:
            at = _dated(state, sample.at)
            new = ConditionState(
                raw, raw, None, (), sample.at, last_ids, at, history, state.hits, state.ignored
            )
            return new, (Change(raw, at, (sample.id,)),)
        due, pending_ids = sample.at + delay, (sample.id,)
    new = ConditionState(
        active, raw, due, pending_ids, sample.at, last_ids,
        state.changed_at, history, state.hits, state.ignored,
    )  # fmt: skip
    return new, ()


def _stale(
    rule: Rule, state: ConditionState, sample: Sample, last_ids: tuple[str, ...]
) -> tuple[ConditionState, tuple[Change, ...]]:
    """Any observation clears a stale point at once and arms it again from this observation."""
    after = rule.stale_after
    due = None if after is None else sample.at + after
    if not state.active:
        new = ConditionState(
            False, False, due, (), sample.at, last_ids,
            state.changed_at, (), (), state.ignored,
        )  # fmt: skip
        return new, ()
    at = _dated(state, sample.at)
    new = ConditionState(False, False, due, (), sample.at, last_ids, at, (), (), state.ignored)
    return new, (Change(False, at, (sample.id,)),)


def _detection(
    rule: Rule, state: ConditionState, sample: Sample, last_ids: tuple[str, ...]
) -> tuple[ConditionState, tuple[Change, ...]]:
    at = sample.at
    minimum = rule.min_confidence
    confidence = sample.confidence
    if sample.quality == _BAD:
        qualifies = None  # a faulty camera's detections say nothing, either way
    else:
        qualifies = minimum is None or (confidence is not None and confidence >= minimum)
    hold = rule.persistence_window + rule.off_delay
    if not qualifies:
        if qualifies is False and state.active and not hold:
            when = _dated(state, at)
            new = ConditionState(False, False, None, (), at, last_ids, when, (), (), state.ignored)
            return new, (Change(False, when, (sample.id,)),)
        return _noted(state, at, last_ids), ()
    count = max(rule.persistence_count, 1)
    hits = (*state.hits, (at, sample.id))
    if len(hits) > count:
        hits = hits[-count:]
    # While active, each qualifying detection pushes the clear out by the hold.
    due = at + hold if hold else None
    if state.active:
        new = ConditionState(
            True, True, due, (sample.id,), at, last_ids, state.changed_at, (), hits, state.ignored
        )
        return new, ()
    if len(hits) == count and at - hits[0][0] <= rule.persistence_window:
        when = _dated(state, at)
        ids = tuple(hit[1] for hit in hits)
        new = ConditionState(True, True, due, (sample.id,), at, last_ids, when, (), hits, state.ignored)
        return new, (Change(True, when, ids),)
    new = ConditionState(False, False, None, (), at, last_ids, state.changed_at, (), hits, state.ignored)
    return new, ()


def _noted(state: ConditionState, at: datetime, last_ids: tuple[str, ...]) -> ConditionState:
    """The state with one more observation applied that changed nothing else."""
    return ConditionState(
        state.active, state.raw, state.due, state.pending_ids, at, last_ids,
        state.changed_at, state.history, state.hits, state.ignored,
    )  # fmt: skip
