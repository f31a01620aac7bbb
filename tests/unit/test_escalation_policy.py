"""Climbing a policy's steps with time as a parameter: waits, repeats, the acknowledgement
deadline, acknowledgement at each step, resolution mid-wait, a policy changed mid-climb, and the
policies refused (a loop, a step naming no endpoint, a negative wait)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.escalation.domain.policy import (
    Climb,
    InvalidPolicy,
    Notify,
    Policy,
    Step,
    advance,
    check_steps,
    choose,
    start,
    stop,
)

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
POLICY = Policy(
    id="p1",
    tenant="ulsan-refining",
    steps=(
        Step(endpoints=("room",), wait_s=300, repeat=1),  # control room, twice, 5 min apart
        Step(endpoints=("manager",), wait_s=600),
        Step(endpoints=("city",), wait_s=900),
    ),
)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def climb_until(policy: Policy, minutes: float, severity: str = "Severe") -> list[tuple[float, Notify]]:
    """Every notification of an incident opened at T0 and never acknowledged, minute by minute."""
    climb, first = start(policy, "i1", severity, T0)
    sent = [(0.0, first)]
    for tenth in range(1, int(minutes * 10) + 1):
        climb, notify = advance(policy, climb, severity, at(tenth / 10))
        if notify is not None:
            sent.append((tenth / 10, notify))
    return sent


def test_an_unacknowledged_incident_climbs_every_step_with_its_waits_and_repeats() -> None:
    sent = climb_until(POLICY, 60)
    assert [(m, n.endpoints, n.step, n.round) for m, n in sent] == [
        (0.0, ("room",), 0, 0),
        (5.0, ("room",), 0, 1),  # repeated once
        (10.0, ("manager",), 1, 0),
        (20.0, ("city",), 2, 0),
    ]
    climb, _ = start(POLICY, "i1", "Severe", T0)
    for minutes in (5, 10, 20, 35):
        climb, _ = advance(POLICY, climb, "Severe", at(minutes))
    assert not climb.climbing and climb.stopped == "top"


def test_nothing_happens_before_the_due_time() -> None:
    climb, _ = start(POLICY, "i1", "Severe", T0)
    assert advance(POLICY, climb, "Severe", at(4.99)) == (climb, None)


@pytest.mark.parametrize("acked_after", [0.5, 5.5, 10.5, 20.5])
def test_acknowledgement_at_any_step_stops_the_climb(acked_after: float) -> None:
    climb, _ = start(POLICY, "i1", "Severe", T0)
    notified = 1
    for tenth in range(1, 600):
        now = at(tenth / 10)
        if tenth / 10 == acked_after:
            climb = stop(climb, "acknowledged")
        climb, notify = advance(POLICY, climb, "Severe", now)
        notified += notify is not None
    assert climb.stopped == "acknowledged" or (acked_after > 20 and climb.stopped == "top")
    assert notified == {0.5: 1, 5.5: 2, 10.5: 3, 20.5: 4}[acked_after]


def test_resolution_mid_wait_stops_it_and_no_later_notification_comes() -> None:
    climb, _ = start(POLICY, "i1", "Severe", T0)
    climb, _ = advance(POLICY, climb, "Severe", at(5))
    climb = stop(climb, "resolved")
    assert climb.due is None
    assert advance(POLICY, climb, "Severe", at(100)) == (climb, None)
    assert stop(climb, "acknowledged").stopped == "resolved"  # the first reason stays


def test_the_acknowledgement_deadline_of_the_severity_caps_every_wait() -> None:
    urgent = replace(POLICY, ack_deadlines_s={"Extreme": 60})
    sent = climb_until(urgent, 10, severity="Extreme")
    assert [m for m, _ in sent] == [0.0, 1.0, 2.0, 3.0]
    assert [m for m, _ in climb_until(urgent, 10, severity="Moderate")] == [0.0, 5.0, 10.0]


def test_a_policy_changed_mid_climb_applies_from_the_next_step() -> None:
    climb, _ = start(POLICY, "i1", "Severe", T0)
    climb, notify = advance(POLICY, climb, "Severe", at(5))  # step 0, round 1
    assert notify is not None and notify.round == 1
    # The wait already running is kept (it was set when step 0 was notified)...
    changed = replace(
        POLICY,
        steps=(Step(endpoints=("room",), wait_s=60), Step(endpoints=("director",), wait_s=60)),
    )
    assert advance(changed, climb, "Severe", at(9.9)) == (climb, None)
    # ... and the next step is the changed policy's.
    climb, notify = advance(changed, climb, "Severe", at(10))
    assert notify == Notify(("director",), 1, 0)
    assert climb.due == at(11)
    # A policy deleted meanwhile ends the climb.
    assert advance(None, climb, "Severe", at(11))[0].stopped == "policy gone"


def test_a_step_may_jump_forward_and_the_first_matching_policy_wins() -> None:
    jumping = replace(POLICY, steps=(replace(POLICY.steps[0], repeat=0, next=2), *POLICY.steps[1:]))
    assert [n.step for _, n in climb_until(jumping, 60)] == [0, 2]
    specific = Policy(id="p0", tenant="t", steps=POLICY.steps, types=frozenset({"fire"}), position=0)
    general = replace(POLICY, position=1)
    assert choose([general, specific], site="s", severity="Minor", incident_type="fire") is specific
    assert choose([general, specific], site="s", severity="Minor", incident_type="gas_release") is general
    picky = replace(POLICY, min_severity="Extreme", sites=frozenset({"a"}))
    assert choose([picky], site="a", severity="Severe", incident_type="fire") is None
    assert choose([picky], site="b", severity="Extreme", incident_type="fire") is None


@pytest.mark.parametrize(
    ("steps", "field", "words"),
    [
        ((), "steps", "at least one"),
        ((Step(endpoints=(), wait_s=1),), "steps[0].endpoints", "at least one endpoint"),
        ((Step(endpoints=("ghost",), wait_s=1),), "steps[0].endpoints", "no endpoint 'ghost'"),
        ((Step(endpoints=("room",), wait_s=-1),), "steps[0].waitS", "negative"),
        ((Step(endpoints=("room",), wait_s=1, repeat=-1),), "steps[0].repeat", "negative"),
        (
            (Step(endpoints=("room",), wait_s=1), Step(endpoints=("room",), wait_s=1, next=0)),
            "steps[1].next",
            "a loop",
        ),
        ((Step(endpoints=("room",), wait_s=1, next=0),), "steps[0].next", "a loop"),
        ((Step(endpoints=("room",), wait_s=1, next=5),), "steps[0].next", "no step 5"),
    ],
)
def test_a_policy_that_cannot_be_is_refused_naming_the_field(
    steps: tuple[Step, ...], field: str, words: str
) -> None:
    with pytest.raises(InvalidPolicy) as refused:
        check_steps(steps, {"room", "manager"})
    assert refused.value.field == field and words in refused.value.detail


def test_a_climb_over_stays_over() -> None:
    over = Climb("i1", "p1", 2, 0, None, "top")
    assert advance(POLICY, over, "Severe", at(1000)) == (over, None)
