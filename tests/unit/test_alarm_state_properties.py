"""Properties of the alarm state machine over random histories of conditions, people and time.

A history is a list of steps; each step moves the clock forward (or to the point's next due
timer) and applies one event. Refused requests are part of histories: they must leave the point
as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.alarms.domain.actions import (
    Ack,
    Activate,
    AlarmActionError,
    Clear,
    Event,
    OutOfService,
    ReturnToService,
    Shelve,
    Suppress,
    SuppressionKind,
    TimerDue,
    Unshelve,
    Unsuppress,
)
from services.alarms.domain.facts import facts
from services.alarms.domain.model import AlarmState, Transition
from services.alarms.domain.state import BASE_STATES, OVERLAY_STATES, PointState, apply, next_due
from tests.unit.alarm_points import POINT, T0, check_consistent

UNACK = AlarmState.UNACK
HISTORIES = settings(max_examples=200, deadline=None)

IDS = st.sampled_from([(), ("o1",), ("o2",), ("o3",), ("o4",), ("o1", "o5")])
# Mostly valid requests, some refused for their fields: a missing reason, no duration, past the cap.
REASONS = st.sampled_from(["gas test done", "permit 42", "nuisance", ""])
DURATIONS = st.sampled_from([None, None, *(timedelta(minutes=m) for m in (5, 60, 540, 0))])
CAPS = st.sampled_from([None, timedelta(hours=8)])
KINDS = st.sampled_from(list(SuppressionKind))


EVENT_KINDS = st.sampled_from(
    # Conditions are drawn as often as all requests together: most of a history is made of them.
    # Overlays are entered less often than left, so that histories spend time outside them too.
    ["activate", "clear"] * 5
    + ["due", "ack", "ack", "shelve", "shelve", "unshelve", "unshelve"]
    + ["suppress", "unsuppress", "unsuppress", "oos", "rts", "rts"]
)


def event_at(draw: st.DrawFn, t: datetime) -> Event:
    kind = draw(EVENT_KINDS)
    if kind == "activate":
        return Activate(t, draw(IDS))
    if kind == "clear":
        return Clear(t, draw(IDS), latching=draw(st.booleans()))
    if kind == "due":
        return TimerDue(t)
    if kind == "ack":
        return Ack(t, "kim")
    if kind == "shelve":
        return Shelve(t, "kim", draw(REASONS), draw(DURATIONS), draw(CAPS))
    if kind == "unshelve":
        return Unshelve(t, "kim")
    if kind == "suppress":
        return Suppress(t, draw(KINDS), "ptw", draw(REASONS))
    if kind == "unsuppress":
        return Unsuppress(t, draw(KINDS), "ptw")
    if kind == "oos":
        return OutOfService(t, "lee", draw(REASONS))
    return ReturnToService(t, "lee")


@dataclass(frozen=True)
class Step:
    before: PointState
    event: Event
    after: PointState
    transitions: list[Transition]
    refused: bool


@st.composite
def histories(draw: st.DrawFn) -> list[Step]:
    point, t, steps = PointState(POINT), T0, []
    for _ in range(draw(st.integers(0, 40))):
        due = next_due(point)
        if due is not None and draw(st.booleans()):
            # The scheduler sends the point's timer when due, or late (after a restart).
            t = max(t, due + timedelta(seconds=draw(st.sampled_from([0, 0, 1, 600]))))
            event: Event = TimerDue(t)
        else:
            t += timedelta(seconds=draw(st.sampled_from([0, 1, 30, 600, 3600, 30000])))
            event = event_at(draw, t)
        try:
            after, transitions = apply(point, event)
        except AlarmActionError:
            after, transitions, refused = point, [], True
        else:
            refused = False
        steps.append(Step(point, event, after, transitions, refused))
        point = after
    return steps


def leaves_an_overlay(event: Event) -> bool:
    return isinstance(event, Unshelve | TimerDue | Unsuppress | ReturnToService)


@HISTORIES
@given(histories())
def test_transitions_chain_and_every_point_is_consistent(steps: list[Step]) -> None:
    previous = AlarmState.NORM
    for step in steps:
        check_consistent(step.after)
        assert len(step.transitions) <= 1
        for t in step.transitions:
            assert (t.point, t.old, t.at, t.active) == (POINT, previous, step.event.at, step.after.active)
            assert t.new is not t.old
            previous = t.new
        assert step.after.state is previous
        if not step.transitions:
            assert step.after.state is step.before.state


@HISTORIES
@given(histories())
def test_an_acknowledged_alarm_never_returns_to_unack_without_a_new_activation(steps: list[Step]) -> None:
    for step in steps:
        for t in step.transitions:
            if t.new is not UNACK:
                continue
            assert t.old is not AlarmState.ACKED
            if t.old in OVERLAY_STATES:
                # Re-annunciated as the overlay ends: the condition is active now.
                assert leaves_an_overlay(step.event) and step.after.active
            else:
                # From NORM or RTNUN: only the condition rising again.
                assert isinstance(step.event, Activate) and not step.before.active


@HISTORIES
@given(histories())
def test_a_shelved_alarm_produces_no_unack_until_unshelved_or_expired(steps: list[Step]) -> None:
    for step in steps:
        if step.before.shelve is None:
            continue
        if any(t.new is UNACK for t in step.transitions):
            until = step.before.shelved_until
            expired = isinstance(step.event, TimerDue) and until is not None and step.event.at >= until
            assert isinstance(step.event, Unshelve) or expired
        if step.after.shelve is not None:
            assert step.after.state is not UNACK


@HISTORIES
@given(histories())
def test_a_refused_request_changes_nothing(steps: list[Step]) -> None:
    for step in steps:
        if step.refused:
            assert step.after is step.before and step.transitions == []


@HISTORIES
@given(histories())
def test_a_condition_timer_or_suppression_twice_yields_no_second_transition(steps: list[Step]) -> None:
    for step in steps:
        if isinstance(step.event, Activate | Clear | TimerDue | Suppress) and not step.refused:
            assert apply(step.after, step.event) == (step.after, [])


@HISTORIES
@given(histories(), st.data())
def test_any_redelivery_of_conditions_and_timers_yields_the_same_transitions(
    steps: list[Step], data: st.DataObject
) -> None:
    point, transitions = PointState(POINT), []
    for step in steps:
        repeat = 1 if step.refused else data.draw(st.integers(1, 3))
        if not isinstance(step.event, Activate | Clear | TimerDue):
            repeat = 1  # a person's request is not redelivered; a repeated ack is refused
        for _ in range(repeat):
            point, caused = apply(point, step.event) if not step.refused else (point, [])
            transitions.extend(caused)
    assert transitions == [t for step in steps for t in step.transitions]
    assert point == (steps[-1].after if steps else PointState(POINT))


@HISTORIES
@given(histories())
def test_a_timer_before_it_is_due_changes_nothing(steps: list[Step]) -> None:
    for step in steps:
        due = next_due(step.after)
        early = step.event.at if due is None else min(step.event.at, due - timedelta(microseconds=1))
        assert apply(step.after, TimerDue(early)) == (step.after, [])


@HISTORIES
@given(histories())
def test_the_observations_of_the_last_rise_and_return_redelivered_later_change_nothing(
    steps: list[Step],
) -> None:
    last_edges: dict[type, Activate | Clear] = {}
    for step in steps:
        if isinstance(step.event, Activate | Clear) and step.before.active != step.after.active:
            last_edges[type(step.event)] = step.event
        for edge in last_edges.values():
            if edge.observation_ids:  # an edge a timer decided has none to recognise it by
                assert apply(step.after, edge) == (step.after, [])


@HISTORIES
@given(histories())
def test_activations_are_exactly_the_rises_of_an_annunciated_condition(steps: list[Step]) -> None:
    for step in steps:
        counted = sum(facts(step.before, t).activation for t in step.transitions)
        rose = isinstance(step.event, Activate) and not step.before.active and step.after.active
        assert counted == int(rose and step.before.state in BASE_STATES)
