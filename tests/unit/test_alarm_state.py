"""The alarm state machine in the stories an operator lives through: latching, shelving, layered
suppression, timers as data, the cause every transition carries, and how a request is refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.alarms.domain.actions import (
    Ack,
    Activate,
    Clear,
    IllegalAction,
    InvalidAction,
    OutOfService,
    ReturnToService,
    Shelve,
    ShelveKind,
    Suppress,
    SuppressionKind,
    TimerDue,
    Unshelve,
    Unsuppress,
)
from services.alarms.domain.model import AlarmState, OperatorAction, Transition
from services.alarms.domain.state import SHELVE_EXPIRY, PointState, apply, next_due
from tests.unit.alarm_points import POINT, at, run

NORM, UNACK, ACKED, RTNUN = AlarmState.NORM, AlarmState.UNACK, AlarmState.ACKED, AlarmState.RTNUN
SHLVD, DSUPR, OOSRV = AlarmState.SHLVD, AlarmState.DSUPR, AlarmState.OOSRV
HOUR = timedelta(hours=1)


def path(transitions: list[Transition]) -> list[tuple[AlarmState, AlarmState]]:
    return [(t.old, t.new) for t in transitions]


def test_an_alarm_raised_acknowledged_and_cleared_goes_back_to_normal() -> None:
    point, transitions = run([Activate(at(1), ("o1",)), Ack(at(5), "kim"), Clear(at(9), ("o2",))])
    assert path(transitions) == [(NORM, UNACK), (UNACK, ACKED), (ACKED, NORM)]
    assert point.state is NORM and not point.active


def test_an_alarm_that_clears_unseen_waits_for_an_ack_and_comes_back_if_it_rises_again() -> None:
    point, transitions = run([Activate(at(1), ("o1",)), Clear(at(2), ("o2",)), Activate(at(3), ("o3",))])
    assert path(transitions) == [(NORM, UNACK), (UNACK, RTNUN), (RTNUN, UNACK)]
    point, transitions = run([Clear(at(4), ("o4",)), Ack(at(5), "kim")], point)
    assert path(transitions) == [(UNACK, RTNUN), (RTNUN, NORM)]


def test_a_latching_alarm_acknowledged_while_active_needs_an_ack_after_its_return() -> None:
    latched = Clear(at(3), ("o2",), latching=True)
    point, transitions = run([Activate(at(1), ("o1",)), Ack(at(2), "kim"), latched])
    assert path(transitions)[-1] == (ACKED, RTNUN)
    assert point.state is RTNUN and not point.active
    assert point.unack_since == at(3)  # its return waits for an ack from then
    point, transitions = run([Ack(at(4), "kim", "checked the area")], point)
    assert path(transitions) == [(RTNUN, NORM)]


def test_every_transition_carries_its_cause_and_time() -> None:
    _, transitions = run(
        [
            Activate(at(1), ("o1", "o2"), timer="on_delay"),
            Ack(at(5), "kim", "crew sent"),
            Shelve(at(6), "kim", "known leak, repair at 10:00", HOUR),
            TimerDue(at(6) + HOUR),
        ]
    )
    raised, acked, shelved, expired = transitions
    assert (raised.point, raised.at, raised.observation_ids, raised.timer, raised.action) == (
        POINT,
        at(1),
        ("o1", "o2"),
        "on_delay",
        None,
    )
    assert raised.active and acked.active
    assert acked.action == OperatorAction(person="kim", action="ack", reason="crew sent")
    assert shelved.action == OperatorAction("kim", "shelve", "known leak, repair at 10:00")
    assert (expired.old, expired.new, expired.timer) == (SHLVD, UNACK, SHELVE_EXPIRY)
    assert expired.at == at(6) + HOUR


def test_a_timed_shelve_is_data_the_caller_schedules_and_expires_no_earlier() -> None:
    point, _ = run([Activate(at(1), ("o1",)), Shelve(at(10), "kim", "nuisance", timedelta(minutes=30))])
    assert point.shelve is ShelveKind.TIMED
    assert next_due(point) == point.shelved_until == at(10) + timedelta(minutes=30)
    early = apply(point, TimerDue(at(10) + timedelta(minutes=29)))
    assert early == (point, [])
    point, transitions = apply(point, TimerDue(at(10) + timedelta(minutes=31)))  # late after a restart
    assert path(transitions) == [(SHLVD, UNACK)]
    assert next_due(point) is None
    assert apply(point, TimerDue(at(10) + timedelta(minutes=32))) == (point, [])


def test_a_shelved_alarm_tracks_its_condition_and_annunciates_it_when_unshelved() -> None:
    point, transitions = run([Shelve(at(1), "kim", "sensor swap", HOUR), Activate(at(2), ("o1",))])
    assert path(transitions) == [(NORM, SHLVD)] and point.active
    point, transitions = apply(point, Unshelve(at(3), "kim"))
    assert path(transitions) == [(SHLVD, UNACK)]


def test_an_acknowledged_alarm_comes_back_unacknowledged_after_a_shelve_if_still_active() -> None:
    point, _ = run([Activate(at(1), ("o1",)), Ack(at(2), "kim"), Shelve(at(3), "kim", "nuisance", HOUR)])
    _, transitions = apply(point, Unshelve(at(4), "kim"))
    assert path(transitions) == [(SHLVD, UNACK)]


def test_a_one_shot_shelve_ends_when_the_condition_next_clears() -> None:
    point, _ = run([Shelve(at(1), "kim", "known release", None), Activate(at(2), ("o1",))])
    assert point.shelve is ShelveKind.ONE_SHOT and next_due(point) is None
    point, transitions = apply(point, Clear(at(3), ("o2",)))
    assert path(transitions) == [(SHLVD, NORM)]
    _, transitions = apply(point, Activate(at(4), ("o3",)))
    assert path(transitions) == [(NORM, UNACK)]


def test_a_one_shot_shelve_of_a_safety_alarm_ends_at_the_class_maximum_at_the_latest() -> None:
    cap = timedelta(hours=8)
    point, _ = run([Activate(at(1), ("o1",)), Shelve(at(2), "kim", "known leak", None, max_duration=cap)])
    assert next_due(point) == at(2) + cap
    _, transitions = apply(point, TimerDue(at(2) + cap))
    assert path(transitions) == [(SHLVD, UNACK)]


def test_a_shelve_past_the_class_maximum_is_refused_naming_the_duration_and_the_state() -> None:
    point, _ = run([Activate(at(1), ("o1",))])
    with pytest.raises(InvalidAction) as refused:
        apply(point, Shelve(at(2), "kim", "nuisance", timedelta(hours=9), max_duration=timedelta(hours=8)))
    assert (refused.value.field, refused.value.state, refused.value.action) == ("duration", UNACK, "shelve")
    at_cap = Shelve(at(2), "kim", "nuisance", timedelta(hours=8), max_duration=timedelta(hours=8))
    assert apply(point, at_cap)[0].state is SHLVD


@pytest.mark.parametrize(
    "request_",
    [
        Shelve(at(2), "kim", " ", HOUR),
        Suppress(at(2), SuppressionKind.API, "kim", ""),
        OutOfService(at(2), "kim", ""),
    ],
)
def test_shelve_suppress_and_out_of_service_need_a_reason(
    request_: Shelve | Suppress | OutOfService,
) -> None:
    with pytest.raises(InvalidAction) as refused:
        apply(PointState(POINT), request_)
    assert refused.value.field == "reason"


def test_a_shelve_of_no_duration_is_refused() -> None:
    with pytest.raises(InvalidAction) as refused:
        apply(PointState(POINT), Shelve(at(2), "kim", "nuisance", timedelta(0)))
    assert refused.value.field == "duration"


def test_an_illegal_action_names_the_current_state() -> None:
    with pytest.raises(IllegalAction, match="ack refused in state NORM: nothing to acknowledge"):
        apply(PointState(POINT), Ack(at(1), "kim"))
    point, _ = run([Activate(at(1), ("o1",)), Ack(at(2), "kim")])
    with pytest.raises(IllegalAction, match="state ACKED: already acknowledged"):
        apply(point, Ack(at(3), "lee"))
    with pytest.raises(IllegalAction, match="unshelve refused in state ACKED: not shelved"):
        apply(point, Unshelve(at(3), "lee"))


def test_overlays_stack_and_the_point_returns_through_them_in_order() -> None:
    point, transitions = run(
        [
            Activate(at(1), ("o1",)),
            Shelve(at(2), "kim", "nuisance", HOUR),
            Suppress(at(3), SuppressionKind.PERMIT_TO_WORK, "ptw-42", "hot work in zone"),
            Suppress(at(4), SuppressionKind.MAINTENANCE, "lee", "zone in maintenance"),
            OutOfService(at(5), "lee", "detector removed"),
            ReturnToService(at(6), "lee", "detector refitted"),
            Unsuppress(at(7), SuppressionKind.PERMIT_TO_WORK, "ptw-42"),
            Unsuppress(at(8), SuppressionKind.MAINTENANCE, "lee"),
            Unshelve(at(9), "kim"),
        ]
    )
    assert path(transitions) == [
        (NORM, UNACK),
        (UNACK, SHLVD),
        (SHLVD, DSUPR),
        (DSUPR, OOSRV),
        (OOSRV, DSUPR),
        (DSUPR, SHLVD),
        (SHLVD, UNACK),
    ]
    assert point.suppressions == () and point.shelve is None and point.out_of_service is None


def test_a_shelve_that_expires_under_a_suppression_is_gone_when_the_suppression_ends() -> None:
    point, transitions = run(
        [
            Shelve(at(1), "kim", "nuisance", HOUR),
            Suppress(at(2), SuppressionKind.SCHEDULE, "night-shutdown", "unit 2 down at night"),
            TimerDue(at(1) + HOUR),
        ]
    )
    assert path(transitions) == [(NORM, SHLVD), (SHLVD, DSUPR)]
    assert point.shelve is None
    _, transitions = apply(point, Unsuppress(at(1) + 2 * HOUR, SuppressionKind.SCHEDULE, "night-shutdown"))
    assert path(transitions) == [(DSUPR, NORM)]


def test_a_suppression_said_again_changes_nothing_and_keeps_the_first_reason() -> None:
    first = Suppress(at(1), SuppressionKind.SCHEDULE, "night-shutdown", "unit 2 down at night")
    point, _ = run([first])
    again = apply(point, Suppress(at(2), SuppressionKind.SCHEDULE, "night-shutdown", "still night"))
    assert again == (point, [])
    assert point.suppressions[0].reason == "unit 2 down at night"


def test_a_redelivered_activation_or_clear_yields_no_second_transition() -> None:
    events = [Activate(at(1), ("o1",)), Clear(at(2), ("o2",))]
    point, transitions = run(events)
    assert len(transitions) == 2
    # The same observations again, in the same or another order: the edges they caused are known.
    for replay in (events, events[::-1]):
        assert run(replay, point) == (point, [])


def test_the_time_an_alarm_waited_for_its_ack_is_kept_until_it_is_acknowledged() -> None:
    point, _ = run([Activate(at(1), ("o1",)), Clear(at(5), ("o2",))])
    assert point.unack_since == at(1)
    point, transitions = apply(point, Ack(at(65), "kim"))
    assert transitions[0].at - at(1) == timedelta(seconds=64)
    assert point.unack_since is None
