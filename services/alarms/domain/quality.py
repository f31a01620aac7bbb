"""Alarm quality (ISA-18.2 / EEMUA 191): chattering, fleeting and flood. Pure, bounded memory.

- Chattering: more than 5 transitions of one point in 5 minutes.
- Fleeting: from UNACK back to normal unacknowledged (RTNUN) in under 10 seconds.
- Flood, per site: begins when more than 10 alarms activated in 10 minutes, ends when fewer than
  5 did; while in flood, the incident layer summarises instead of paging per alarm.

Windows are the span ending at the instant judged, the far edge excluded: "in 10 minutes" at
12:10:00 counts activations after 12:00:00 up to and including 12:10:00. Deciding "more than K in
the window" needs only the K + 1 latest times (the (K + 1)-th latest is inside or not), so each
window keeps at most that many, whatever the rate: a flood of thousands costs 11 times a site.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime, timedelta

CHATTER_TRANSITIONS = 5  # more than this many ...
CHATTER_WINDOW = timedelta(minutes=5)  # ... within this span is chattering
FLEETING_UNDER = timedelta(seconds=10)
FLOOD_BEGINS_ABOVE = 10  # more than this many activations ...
FLOOD_ENDS_BELOW = 5  # ... and fewer than this many ...
FLOOD_WINDOW = timedelta(minutes=10)  # ... within this span


def is_fleeting(unacked_at: datetime, returned_at: datetime) -> bool:
    """An alarm that returned to normal unacknowledged within 10 s of raising: nobody could act."""
    return returned_at - unacked_at < FLEETING_UNDER


def _latest(times: tuple[datetime, ...], at: datetime, keep: int) -> tuple[datetime, ...]:
    """`times` (sorted) with `at` added in order, keeping the `keep` latest."""
    if not times or at >= times[-1]:
        grown = (*times, at)
    else:  # a late arrival (another point's older activation): in order, so counts stay exact
        index = bisect.bisect_right(times, at)
        grown = (*times[:index], at, *times[index:])
    return grown[-keep:] if len(grown) > keep else grown


def _in_window(times: tuple[datetime, ...], now: datetime, window: timedelta) -> int:
    """How many of `times` fall in the window ending at `now` (the far edge excluded)."""
    return len(times) - bisect.bisect_right(times, now - window)


# Chattering ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatterState:
    """The latest transition times of one point, at most CHATTER_TRANSITIONS + 1."""

    times: tuple[datetime, ...] = ()


def record_transition(state: ChatterState, at: datetime) -> tuple[ChatterState, bool]:
    """Note one transition of the point; and whether the point is chattering at `at`."""
    times = _latest(state.times, at, CHATTER_TRANSITIONS + 1)
    new = ChatterState(times)
    return new, is_chattering(new, times[-1])


def is_chattering(state: ChatterState, now: datetime) -> bool:
    return _in_window(state.times, now, CHATTER_WINDOW) > CHATTER_TRANSITIONS


# Flood --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FloodEvent:
    """A site's flood began or ended, at `at`, with `count` activations in the window then."""

    began: bool
    at: datetime
    count: int
    since: datetime  # when this flood began (equal to `at` for a beginning)
    activations: int  # activations from the flood's beginning to `at`, the beginning's own included


@dataclass(frozen=True, slots=True)
class FloodState:
    """One site's flood detector: the latest activation times and, in a flood, its bookkeeping."""

    times: tuple[datetime, ...] = ()  # the FLOOD_BEGINS_ABOVE + 1 latest
    since: datetime | None = None  # in flood since; None: not in flood
    activations: int = 0  # since the flood began

    @property
    def flooding(self) -> bool:
        return self.since is not None


def next_flood_due(state: FloodState) -> datetime | None:
    """When the flood ends unless more alarms come: the window's count then falls below the end
    threshold (the FLOOD_ENDS_BELOW-th latest activation leaves the window)."""
    if state.since is None:
        return None
    times = state.times
    return times[-FLOOD_ENDS_BELOW] + FLOOD_WINDOW if len(times) >= FLOOD_ENDS_BELOW else state.since


def flood_timer(state: FloodState, now: datetime) -> tuple[FloodState, FloodEvent | None]:
    """End the flood if it fell due by `now`, dated when it fell due."""
    due = next_flood_due(state)
    if due is None or due > now or state.since is None:
        return state, None
    count = _in_window(state.times, due, FLOOD_WINDOW)
    event = FloodEvent(False, due, count, state.since, state.activations)
    return FloodState(state.times), event


def record_activation(state: FloodState, at: datetime) -> tuple[FloodState, tuple[FloodEvent, ...]]:
    """Note one alarm activation on the site: the flood's end that fell due before it, if any,
    then its beginning, if this activation is the one past the threshold."""
    ended: tuple[FloodEvent, ...] = ()
    due = next_flood_due(state)
    if due is not None and due < at:
        # Strictly before: an activation at the very instant the count would drop keeps it at 5.
        state, end = flood_timer(state, due)
        ended = (end,) if end is not None else ()
    times = _latest(state.times, at, FLOOD_BEGINS_ABOVE + 1)
    if state.since is not None:
        return FloodState(times, state.since, state.activations + 1), ended
    latest = times[-1]  # a late activation is judged at the latest one known
    count = _in_window(times, latest, FLOOD_WINDOW)
    if count > FLOOD_BEGINS_ABOVE:
        return FloodState(times, latest, count), (*ended, FloodEvent(True, latest, count, latest, count))
    return FloodState(times), ended
