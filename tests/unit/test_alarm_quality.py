"""Alarm quality: chattering, fleeting and flood at their thresholds and window edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.alarms.domain.quality import (
    ChatterState,
    FloodEvent,
    FloodState,
    flood_timer,
    is_chattering,
    is_fleeting,
    next_flood_due,
    record_activation,
    record_transition,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def transitions(*seconds: float) -> tuple[ChatterState, list[bool]]:
    state, flags = ChatterState(), []
    for s in seconds:
        state, chattering = record_transition(state, at(s))
        flags.append(chattering)
    return state, flags


def activations(*seconds: float, state: FloodState | None = None) -> tuple[FloodState, list[FloodEvent]]:
    state, events = state or FloodState(), []
    for s in seconds:
        state, made = record_activation(state, at(s))
        events.extend(made)
    return state, events


# Chattering ---------------------------------------------------------------------------------


def test_five_transitions_in_five_minutes_are_not_chattering_six_are() -> None:
    _, flags = transitions(0, 30, 60, 90, 120, 150)
    assert flags == [False] * 5 + [True]


def test_chattering_counts_the_five_minutes_ending_now_without_the_far_edge() -> None:
    _, flags = transitions(0, 60, 120, 180, 240, 300)  # the first is exactly 5 min before the last
    assert flags[-1] is False
    _, flags = transitions(0.001, 60, 120, 180, 240, 300)
    assert flags[-1] is True


def test_a_point_stops_chattering_when_its_transitions_leave_the_window() -> None:
    state, _ = transitions(0, 10, 20, 30, 40, 50)
    assert is_chattering(state, at(299.999))
    assert not is_chattering(state, at(300))
    assert len(transitions(*range(0, 10_000, 5))[0].times) == 6  # bounded at any rate


# Fleeting -----------------------------------------------------------------------------------


def test_an_alarm_back_to_normal_in_under_ten_seconds_is_fleeting() -> None:
    assert is_fleeting(at(0), at(9.999))
    assert not is_fleeting(at(0), at(10))


# Flood --------------------------------------------------------------------------------------


def test_ten_activations_in_ten_minutes_are_no_flood_the_eleventh_begins_one() -> None:
    state, events = activations(*range(0, 500, 50))  # 10 in 450 s
    assert events == [] and not state.flooding
    state, events = activations(500, state=state)
    assert events == [FloodEvent(True, at(500), 11, at(500), 11)]
    assert state.flooding


def test_flood_window_excludes_its_far_edge() -> None:
    _, events = activations(*range(0, 601, 60))  # 11, the first exactly 10 min before the last
    assert events == []
    _, events = activations(0.001, *range(60, 601, 60))
    assert [e.began for e in events] == [True]


def flooded() -> FloodState:
    state, _ = activations(*range(0, 110, 10))  # 11 activations, 0..100 s: flood from 100 s
    return state


def test_a_flood_ends_when_fewer_than_five_activations_remain_in_ten_minutes() -> None:
    state = flooded()
    # The fifth latest activation (60 s) leaves the window at 660 s: four remain.
    assert next_flood_due(state) == at(660)
    state, event = flood_timer(state, at(659.999))
    assert event is None and state.flooding  # still five in the window
    state, event = flood_timer(state, at(700))
    assert event == FloodEvent(False, at(660), 4, at(100), 11)
    assert not state.flooding and next_flood_due(state) is None


def test_five_activations_in_the_window_keep_the_flood_going() -> None:
    state, events = activations(650, 655, state=flooded())
    assert events == [] and state.flooding
    # Latest five: 80, 90, 100, 650, 655: the fifth latest, 80 s, leaves at 680 s.
    assert next_flood_due(state) == at(680)
    assert state.activations == 13


def test_an_activation_after_the_flood_fell_due_ends_it_first_at_its_due_time() -> None:
    state, events = activations(900, state=flooded())
    assert events == [FloodEvent(False, at(660), 4, at(100), 11)]
    assert not state.flooding


def test_an_activation_at_the_instant_the_flood_would_end_keeps_it() -> None:
    state, events = activations(660, state=flooded())
    assert events == [] and state.flooding


def test_a_late_activation_from_another_point_is_counted_in_order() -> None:
    state, events = activations(0, 100, 200, 300, 400, 500, 550, 560, 570, 580)
    state, events = activations(50, state=state)  # older than the latest, inside the window
    assert [e.count for e in events] == [11]
    assert events[0].at == at(580)


def test_a_flood_of_thousands_keeps_eleven_times() -> None:
    state, events = activations(*[i * 0.5 for i in range(10_000)])
    assert len(state.times) == 11
    assert [e.began for e in events] == [True]
    assert state.activations == 10_000


# The bounded windows decide as counting every activation would ------------------------------

# Milliseconds apart, on a 10 s grid often enough that activations meet window edges exactly.
_gaps = st.lists(
    st.one_of(st.integers(min_value=0, max_value=120_000), st.sampled_from([0, 10_000, 60_000])),
    max_size=120,
)


def count(times: list[datetime], now: datetime, window: timedelta) -> int:
    return sum(1 for t in times if now - window < t <= now)


@settings(max_examples=2000, deadline=None)
@given(gaps=_gaps)
def test_the_flood_detector_matches_counting_every_activation(gaps: list[int]) -> None:
    times = [T0 + timedelta(milliseconds=sum(gaps[: i + 1])) for i in range(len(gaps))]
    state, events = FloodState(), []
    for t in times:
        state, made = record_activation(state, t)
        events.extend(made)
    state, end = flood_timer(state, times[-1] + timedelta(days=1) if times else T0)
    events.extend([end] if end else [])

    # The oracle counts every activation: it walks every instant where the count changes (an
    # activation arrives, or one leaves the window); at one instant it takes the activations one
    # by one (the one past 10 begins the flood), then sees whether fewer than 5 remain.
    window = timedelta(minutes=10)
    expected, flooding = [], False
    for now in sorted({*times, *(t + window for t in times)}):
        arrived = [t for t in times if t == now]
        base = count(times, now, window) - len(arrived)
        for n in range(base + 1, base + len(arrived) + 1):
            if not flooding and n > 10:
                flooding = True
                expected.append((True, now, n))
        if flooding and base + len(arrived) < 5:
            flooding = False
            expected.append((False, now, base + len(arrived)))
    assert [(e.began, e.at, e.count) for e in events] == expected


@settings(max_examples=2000, deadline=None)
@given(gaps=_gaps)
def test_chattering_matches_counting_every_transition(gaps: list[int]) -> None:
    state = ChatterState()
    seen: list[datetime] = []
    for i in range(len(gaps)):
        t = T0 + timedelta(milliseconds=sum(gaps[: i + 1]) * 0.3)
        seen.append(t)
        state, chattering = record_transition(state, t)
        assert chattering == (count(seen, t, timedelta(minutes=5)) > 5)
