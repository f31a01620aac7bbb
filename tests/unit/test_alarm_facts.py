"""What each transition counts for in the alarm KPIs: activations, returns, ack time, overlays."""

from __future__ import annotations

from datetime import timedelta

from services.alarms.domain.actions import Ack, Activate, Clear, Event, Shelve, TimerDue
from services.alarms.domain.facts import TransitionFacts, facts
from services.alarms.domain.model import AlarmState
from services.alarms.domain.state import PointState, apply
from tests.unit.alarm_points import POINT, at


def facts_of(events: list[Event]) -> list[TransitionFacts]:
    point, found = PointState(POINT), []
    for event in events:
        after, transitions = apply(point, event)
        found.extend(facts(point, t) for t in transitions)
        point = after
    return found


def test_a_rise_an_ack_and_a_return_count_once_each_with_the_ack_time() -> None:
    rose, acked, returned = facts_of([Activate(at(0), ("o1",)), Ack(at(42), "kim"), Clear(at(50), ("o2",))])
    assert (rose.activation, rose.returned, rose.ack_latency) == (True, False, None)
    assert (acked.activation, acked.ack_latency) == (False, timedelta(seconds=42))
    assert (returned.returned, returned.activation, returned.ack_latency) == (True, False, None)


def test_an_ack_after_the_return_counts_the_wait_since_the_rise() -> None:
    *_, acked = facts_of([Activate(at(0), ("o1",)), Clear(at(5), ("o2",)), Ack(at(65), "kim")])
    assert acked.ack_latency == timedelta(seconds=65)


def test_a_latched_return_counts_the_wait_for_its_reset_from_the_return() -> None:
    rose, latched = Activate(at(0), ("o1",)), Clear(at(100), ("o2",), latching=True)
    *_, returned, reset = facts_of([rose, Ack(at(10), "kim"), latched, Ack(at(130), "kim")])
    assert returned.returned
    assert reset.ack_latency == timedelta(seconds=30)


def test_an_alarm_shown_again_after_a_shelve_is_not_a_new_activation() -> None:
    shelve = Shelve(at(1), "kim", "nuisance", timedelta(minutes=10))
    _, shelved, expired = facts_of([Activate(at(0), ("o1",)), shelve, TimerDue(at(601))])
    assert shelved.entered_overlay is AlarmState.SHLVD and not shelved.returned
    assert (expired.activation, expired.reannunciation) == (False, True)
