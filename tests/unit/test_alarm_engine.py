"""The alarm engine over one workset: observations, timers, voting, quality flags, floods, people."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.alarms.domain.actions import Ack, IllegalAction, InvalidAction, Shelve
from services.alarms.domain.evaluate import Quality
from services.alarms.domain.model import AlarmState
from services.alarms.domain.rules import FaultPolicy
from services.alarms.domain.workset import (
    VOTE_RULE,
    Workset,
    decode_flood,
    decode_record,
    encode_flood,
    encode_record,
)
from tests.unit.alarm_engine_builders import (
    DETECTORS,
    PUMP,
    at,
    engine,
    obs,
    point,
)

N, U, A, R, S = AlarmState.NORM, AlarmState.UNACK, AlarmState.ACKED, AlarmState.RTNUN, AlarmState.SHLVD


def states(work: Workset) -> list[tuple[str, AlarmState, AlarmState]]:
    return [(e.transition.point.alarm_id, e.transition.old, e.transition.new) for e in work.emitted]


def test_a_reading_past_the_setpoint_raises_and_a_reading_past_the_deadband_clears() -> None:
    eng, work = engine(), Workset()
    eng.observe(work, [obs("o1", 0, 25.0)])
    eng.observe(work, [obs("o2", 1, 19.0)])  # inside the deadband: still active
    eng.observe(work, [obs("o3", 2, 17.0)])
    assert states(work) == [("gd-1--lel-high", N, U), ("gd-1--lel-high", U, R)]
    first = work.emitted[0]
    assert first.transition.observation_ids == ("o1",)
    assert first.facts.activation and first.alarm.state is U
    assert work.emitted[1].transition.observation_ids == ("o3",)
    assert work.evaluated == 3


def test_a_latching_alarm_stays_until_acknowledged_after_its_return() -> None:
    eng, work = engine(), Workset()
    eng.observe(work, [obs("o1", 0, 45.0)])
    hh = point("gd-1", "lel-high-high")
    eng.act(work, hh, Ack(at(1), "kim"))
    eng.observe(work, [obs("o2", 2, 10.0)])
    assert work.points[hh].state.state is R  # latched
    eng.act(work, hh, Ack(at(3), "kim"))
    assert work.points[hh].state.state is N
    assert work.emitted[-1].transition.action is not None
    assert work.emitted[-1].facts.ack_latency == timedelta(seconds=1)


def test_an_unknown_device_or_a_kind_without_rules_is_counted_not_evaluated() -> None:
    eng, work = engine(), Workset()
    eng.observe(work, [obs("o1", 0, 99.0, device="nobody"), obs("o2", 0, 1.0, kind="temperature")])
    assert work.emitted == [] and work.unwatched == 2 and work.evaluated == 0


def test_observations_of_a_batch_apply_in_time_order_whatever_their_order_in_it() -> None:
    eng, work = engine(), Workset()
    eng.observe(work, [obs("o2", 2, 10.0), obs("o1", 1, 30.0)])
    assert states(work) == [("gd-1--lel-high", N, U), ("gd-1--lel-high", U, R)]


def test_an_on_delay_is_a_due_time_fired_by_the_tick_dated_when_due() -> None:
    eng, work = engine(), Workset()
    eng.observe(work, [obs("v1", 0, 6.0, device=PUMP, kind="vibration")])
    vib = point(PUMP, "vib-high")
    assert work.emitted == [] and work.points[vib].due == at(5)
    eng.tick(work, at(4.9))
    assert work.emitted == []
    eng.tick(work, at(30))  # noticed late (after a restart): still dated at its due time
    assert states(work) == [("vt-1--vib-high", N, U)]
    assert work.emitted[0].transition.at == at(5)
    assert work.emitted[0].transition.timer == "on_delay"
    assert work.timers_fired == 1


def test_a_stale_point_goes_stale_when_due_and_a_reading_clears_it() -> None:
    eng, work = engine(), Workset()
    eng.observe(work, [obs("o1", 0, 1.0)])
    stale = point("gd-1", "lel-stale")
    assert work.points[stale].due == at(60)
    eng.tick(work, at(61))
    eng.observe(work, [obs("o2", 70, 1.0)])
    assert states(work) == [("gd-1--lel-stale", N, U), ("gd-1--lel-stale", U, R)]
    assert work.emitted[0].transition.at == at(60)


def test_two_of_three_confirm_the_group_alarm_and_one_does_not() -> None:
    eng, work = engine(), Workset()
    eng.observe(work, [obs(f"{d}-0", 0, 1.0, device=d) for d in DETECTORS])
    eng.observe(work, [obs("a", 1, 25.0, device="gd-1")])
    group = point("lel-2oo3", VOTE_RULE)
    assert group not in work.points or not work.points[group].state.active
    eng.observe(work, [obs("b", 2, 25.0, device="gd-2")])
    assert work.points[group].state.state is U
    confirmed = [e for e in work.emitted if e.transition.point == group]
    assert [e.transition.observation_ids for e in confirmed] == [("b",)]
    assert confirmed[0].alarm.priority.value == "emergency"
    eng.observe(work, [obs("c", 3, 1.0, device="gd-2")])
    assert work.points[group].state.state is R


@pytest.mark.parametrize(
    ("policy", "confirmed"),
    [(FaultPolicy.TRIP, True), (FaultPolicy.IGNORE, False), (FaultPolicy.DEGRADE, True)],
)
def test_a_stale_member_counts_as_the_policy_says_and_raises_its_own_alarm(
    policy: FaultPolicy, confirmed: bool
) -> None:
    eng, work = engine(policy), Workset()
    eng.observe(work, [obs(f"{d}-0", 0, 1.0, device=d) for d in DETECTORS])
    eng.observe(work, [obs("a", 30, 25.0, device="gd-1"), obs("b", 30, 1.0, device="gd-2")])
    eng.tick(work, at(61))  # gd-3 went stale at 60 s
    assert work.points[point("gd-3", "lel-stale")].state.state is U
    group = work.points.get(point("lel-2oo3", VOTE_RULE))
    assert (group is not None and group.state.active) is confirmed


def test_a_faulty_member_raises_its_fault_alarm() -> None:
    eng, work = engine(FaultPolicy.TRIP), Workset()
    eng.observe(work, [obs(f"{d}-0", 0, 1.0, device=d) for d in DETECTORS])
    eng.observe(work, [obs("f", 1, None, device="gd-3", quality=Quality.BAD)])
    assert work.points[point("gd-3", "lel-fault")].state.state is U
    eng.observe(work, [obs("a", 2, 25.0, device="gd-1")])
    assert work.points[point("lel-2oo3", VOTE_RULE)].state.state is U  # trip: the fault is a vote


def test_an_alarm_back_to_normal_within_10_s_unacknowledged_is_fleeting() -> None:
    eng, work = engine(), Workset()
    eng.observe(work, [obs("o1", 0, 25.0), obs("o2", 3, 10.0)])
    assert work.emitted[-1].transition.flags == frozenset({"fleeting"})
    assert work.points[point("gd-1", "lel-high")].flags == frozenset({"fleeting"})


def test_more_than_five_transitions_in_five_minutes_is_chattering() -> None:
    eng, work = engine(), Workset()
    eng.observe(work, [obs(f"o{i}", 20 * i, 25.0 if i % 2 == 0 else 10.0) for i in range(7)])
    flags = [e.transition.flags for e in work.emitted if e.transition.point.rule == "lel-high"]
    assert len(flags) == 7
    assert all("chattering" not in f for f in flags[:5])
    assert all("chattering" in f for f in flags[5:])


def test_a_flood_begins_past_ten_activations_in_ten_minutes_and_ends_below_five() -> None:
    eng, work = engine(), Workset()
    # Eleven activations of the 2oo3 detectors' high and high-high alternating: 11 within a minute.
    readings = []
    for i in range(6):
        readings.append(obs(f"up{i}", 10 * i, 45.0, device=DETECTORS[i % 3]))
        readings.append(obs(f"dn{i}", 10 * i + 5, 1.0, device=DETECTORS[i % 3]))
    eng.observe(work, readings)
    activations = [e for e in work.emitted if e.facts.activation]
    assert len(activations) > 10
    assert [edge.began for edge in work.edges] == [True]
    began = work.edges[0]
    assert began.at == activations[10].transition.at and began.count == 11
    row = next(iter(work.flood_rows.values()))
    assert row.began_at == began.at and row.ended_at is None
    eng.tick(work, at(3600))
    assert [edge.began for edge in work.edges] == [True, False]
    end = work.edges[1]
    assert end.at < at(3600)  # dated when it fell due
    assert next(iter(work.flood_rows.values())).ended_at == end.at


def test_a_shelved_alarm_annunciates_nothing_until_its_shelve_expires() -> None:
    eng, work = engine(), Workset()
    eng.observe(work, [obs("o1", 0, 1.0)])
    high = point("gd-1", "lel-high")
    eng.act(work, high, Shelve(at(1), "kim", "sensor wash", timedelta(seconds=60), timedelta(hours=8)))
    eng.observe(work, [obs("o2", 10, 30.0)])
    assert work.points[high].state.state is S and work.points[high].due == at(61)
    eng.tick(work, at(62))
    assert work.points[high].state.state is U
    assert work.emitted[-1].transition.timer == "shelve_expiry"
    assert work.emitted[-1].transition.at == at(61)


def test_a_refused_request_changes_nothing() -> None:
    eng, work = engine(), Workset()
    eng.observe(work, [obs("o1", 0, 1.0)])
    high = point("gd-1", "lel-high")
    before = work.points[high]
    with pytest.raises(IllegalAction) as illegal:
        eng.act(work, high, Ack(at(1), "kim"))
    assert illegal.value.state is N
    with pytest.raises(InvalidAction) as invalid:
        eng.act(work, high, Shelve(at(1), "kim", "x", timedelta(hours=9), timedelta(hours=8)))
    assert invalid.value.field == "duration"
    assert work.points[high] is before


def test_a_point_and_a_flood_detector_round_trip_through_msgpack() -> None:
    eng, work = engine(), Workset()
    eng.observe(work, [obs(f"o{i}", 10 * i, 45.0 if i % 2 == 0 else 1.0) for i in range(30)])
    eng.act(work, point("gd-1", "lel-high"), Shelve(at(400), "kim", "wash", None, timedelta(hours=8)))
    for record in work.points.values():
        assert decode_record(encode_record(record)) == record
    for flood in work.floods.values():
        assert decode_flood(encode_flood(flood)) == flood
