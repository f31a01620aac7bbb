"""Condition evaluation of alarm points: set-points with deadband, delays as timers, rate of rise,
stale, bad quality, detection persistence, and order and duplicates of observations."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from services.alarms.domain.evaluate import (
    Change,
    ConditionState,
    Quality,
    Sample,
    Timer,
    apply,
    initial,
    next_due,
    on_timer,
)
from services.alarms.domain.model import AlarmClass, ConditionType, Priority, Rationale, Rule, Selector, Text
from services.common import contracts

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
WHY = Rationale(
    Text("원인", "cause"), Text("결과", "consequence"), Text("조치", "action"), timedelta(minutes=5)
)


def rule(condition: ConditionType, **fields: object) -> Rule:
    base = Rule("r", Selector(kind="gas.h2s"), condition, Priority.HIGH, AlarmClass.SAFETY, WHY)
    return replace(base, **fields)  # type: ignore[arg-type]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Point:
    """Feeds one point and records its changes, as the service will."""

    def __init__(self, rule: Rule, since: datetime = T0) -> None:
        self.rule = rule
        self.state = initial(rule, since)
        self.changes: list[Change] = []
        self.n = 0

    def see(self, seconds: float, value: float | None = None, **fields: object) -> tuple[Change, ...]:
        self.n += 1
        sample = Sample(str(fields.pop("id", f"o{self.n}")), at(seconds), value, **fields)  # type: ignore[arg-type]
        self.state, changes = apply(self.rule, self.state, sample)
        self.changes.extend(changes)
        return changes

    def tick(self, seconds: float) -> tuple[Change, ...]:
        self.state, changes = on_timer(self.rule, self.state, at(seconds))
        self.changes.extend(changes)
        return changes

    @property
    def active(self) -> bool:
        return self.state.active


# Set-points and deadband ----------------------------------------------------------------------


def test_high_activates_at_the_setpoint_and_clears_only_below_setpoint_minus_deadband() -> None:
    p = Point(rule(ConditionType.HIGH, setpoint=10.0, deadband=2.0))
    assert p.see(0, 9.99) == ()
    assert p.see(1, 10.0) == (Change(True, at(1), ("o2",)),)
    assert p.see(2, 8.5) == ()  # inside the deadband: still active
    assert p.see(3, 8.0) == ()  # exactly at setpoint - deadband: not yet back past it
    assert p.see(4, 7.99) == (Change(False, at(4), ("o5",)),)
    assert p.see(5, 9.0) == ()  # below the set-point: a cleared alarm does not re-arm in the band


@pytest.mark.parametrize("condition", [ConditionType.LOW, ConditionType.LOW_LOW])
def test_low_activates_at_or_below_the_setpoint_and_clears_above_setpoint_plus_deadband(
    condition: ConditionType,
) -> None:
    p = Point(rule(condition, setpoint=19.5, deadband=0.5))
    assert p.see(0, 20.9) == ()
    assert p.see(1, 19.5)[0].active
    assert p.see(2, 20.0) == ()
    assert p.see(3, 20.1) == (Change(False, at(3), ("o4",)),)


def test_high_high_is_a_high_with_its_own_setpoint() -> None:
    p = Point(rule(ConditionType.HIGH_HIGH, setpoint=20.0))
    assert p.see(0, 19.0) == ()
    assert p.see(1, 20.5)[0].active
    assert p.see(2, 19.9) == (Change(False, at(2), ("o3",)),)


# On- and off-delays as data -----------------------------------------------------------------


def test_an_on_delay_fires_at_its_due_time_when_the_condition_still_holds() -> None:
    p = Point(rule(ConditionType.HIGH, setpoint=10.0, on_delay=timedelta(seconds=5)))
    assert p.see(0, 12.0) == ()
    assert next_due(p.state) == at(5)
    assert p.see(3, 13.0) == ()  # still holding: the pending activation keeps its due time
    assert next_due(p.state) == at(5)
    assert p.tick(4.9) == ()
    # Noticed late (a restart), it is still dated when it fell due, caused by the first reading.
    assert p.tick(30) == (Change(True, at(5), ("o1",), Timer.ON_DELAY),)
    assert next_due(p.state) is None


def test_a_reading_that_breaks_the_condition_cancels_the_pending_on_delay() -> None:
    p = Point(rule(ConditionType.HIGH, setpoint=10.0, on_delay=timedelta(seconds=5)))
    p.see(0, 12.0)
    p.see(4, 9.0)
    assert next_due(p.state) is None
    assert p.tick(10) == ()
    assert not p.active


def test_an_observation_past_the_due_time_fires_the_timer_first_at_its_due_time() -> None:
    p = Point(rule(ConditionType.HIGH, setpoint=10.0, on_delay=timedelta(seconds=5)))
    p.see(0, 12.0)
    # The next reading comes after the due time and is low: the condition held until then.
    assert p.see(8, 2.0) == (
        Change(True, at(5), ("o1",), Timer.ON_DELAY),
        Change(False, at(8), ("o2",)),
    )


def test_an_off_delay_clears_only_after_the_condition_stayed_away() -> None:
    p = Point(rule(ConditionType.HIGH, setpoint=10.0, off_delay=timedelta(seconds=10)))
    p.see(0, 11.0)
    assert p.see(1, 5.0) == ()
    assert next_due(p.state) == at(11)
    assert p.see(5, 10.5) == ()  # back past the set-point: the clear is cancelled
    assert next_due(p.state) is None
    p.see(6, 5.0)
    assert p.tick(16) == (Change(False, at(16), ("o4",), Timer.OFF_DELAY),)


# Rate of rise -------------------------------------------------------------------------------


def test_rate_of_rise_is_per_minute_over_the_last_minute() -> None:
    p = Point(rule(ConditionType.RATE_OF_RISE, setpoint=6.0, deadband=1.0))
    p.see(0, 0.0)
    assert p.see(30, 2.9) == ()  # 5.8 per minute
    assert p.see(40, 4.0) == (Change(True, at(40), ("o3",)),)  # 6.0 per minute
    # At 70 s the reading of 0 s left the minute; the reference is the one of 30 s:
    # (4.0 - 2.9) * 60 / 40 = 1.65 per minute, below set-point - deadband.
    assert p.see(70, 4.0) == (Change(False, at(70), ("o4",)),)


def test_rate_of_rise_between_consecutive_readings_when_they_are_sparse() -> None:
    p = Point(rule(ConditionType.RATE_OF_RISE, setpoint=3.0))
    p.see(0, 10.0)
    assert p.see(300, 20.0) == ()  # 2 per minute over five minutes
    assert p.see(420, 26.0)[0].active  # 3 per minute since the previous reading


def test_rate_of_rise_keeps_a_bounded_history_at_any_reading_rate() -> None:
    p = Point(rule(ConditionType.RATE_OF_RISE, setpoint=100.0))
    for i in range(2000):
        p.see(i * 0.1, 0.0)
    assert len(p.state.history) <= 13


# Stale --------------------------------------------------------------------------------------


def test_a_point_never_heard_from_goes_stale_after_stale_after_since_it_was_created() -> None:
    p = Point(rule(ConditionType.STALE, stale_after=timedelta(seconds=60)))
    assert next_due(p.state) == at(60)
    assert p.tick(61) == (Change(True, at(60), (), Timer.STALE),)


def test_stale_fires_at_last_seen_plus_stale_after_and_any_observation_clears_it() -> None:
    p = Point(rule(ConditionType.STALE, stale_after=timedelta(seconds=60)))
    p.see(10, 1.0)
    assert next_due(p.state) == at(70)
    assert p.tick(69) == ()
    assert p.tick(70) == (Change(True, at(70), (), Timer.STALE),)
    assert p.see(100, None, quality=Quality.BAD) == (Change(False, at(100), ("o2",)),)
    assert next_due(p.state) == at(160)


# Bad quality --------------------------------------------------------------------------------


def test_bad_quality_raises_the_device_fault_and_a_good_reading_clears_it() -> None:
    p = Point(rule(ConditionType.BAD_QUALITY))
    assert p.see(0, 5.0) == ()
    assert p.see(1, 5000.0, quality=Quality.BAD) == (Change(True, at(1), ("o2",)),)
    assert p.see(2, 3.0, quality=Quality.UNCERTAIN) == ()  # not good: the fault stays
    assert p.see(3, 3.0) == (Change(False, at(3), ("o4",)),)


def test_a_bad_reading_never_raises_nor_clears_a_gas_alarm() -> None:
    p = Point(rule(ConditionType.HIGH, setpoint=10.0))
    # 5000 ppm on a 0-100 ppm detector, marked bad by ingest: no gas alarm from a faulty detector.
    assert p.see(0, 5000.0, quality=Quality.BAD) == ()
    assert not p.active
    p.see(1, 12.0)
    assert p.see(2, 0.0, quality=Quality.BAD) == ()
    assert p.active


def test_an_uncertain_reading_still_drives_the_value_condition() -> None:
    p = Point(rule(ConditionType.HIGH, setpoint=10.0))
    assert p.see(0, 12.0, quality=Quality.UNCERTAIN)[0].active


# Detection ----------------------------------------------------------------------------------


def detection(**fields: object) -> Rule:
    base = dict(min_confidence=0.6, persistence_count=3, persistence_window=timedelta(seconds=10))
    return replace(rule(ConditionType.DETECTION), **(base | fields))  # type: ignore[arg-type]


def test_detection_needs_n_qualifying_detections_within_the_window() -> None:
    p = Point(detection())
    assert p.see(0, confidence=0.9) == ()
    assert p.see(1, confidence=0.5) == ()  # too weak: does not count
    assert p.see(2, confidence=0.6) == ()
    assert p.see(11, confidence=0.7) == ()  # 0, 2, 11: not within 10 s
    assert p.see(12, confidence=0.8) == (Change(True, at(12), ("o3", "o4", "o5")),)


def test_detection_clears_when_no_qualifying_detection_came_for_the_window() -> None:
    p = Point(detection(persistence_count=1))
    p.see(0, confidence=0.9)
    p.see(5, confidence=0.9)
    p.see(8, confidence=0.1)
    assert next_due(p.state) == at(15)
    assert p.tick(15) == (Change(False, at(15), ("o2",), Timer.DETECTION_WINDOW),)


def test_detection_clear_waits_for_the_off_delay_too() -> None:
    p = Point(detection(persistence_count=1, off_delay=timedelta(seconds=20)))
    p.see(0, confidence=0.9)
    assert next_due(p.state) == at(30)


def test_a_faulty_cameras_detections_count_for_nothing() -> None:
    p = Point(detection(persistence_count=1))
    assert p.see(0, confidence=0.99, quality=Quality.BAD) == ()
    assert not p.active


def test_detection_without_a_window_clears_at_the_next_detection_that_does_not_qualify() -> None:
    p = Point(detection(persistence_count=1, persistence_window=timedelta(0)))
    assert p.see(0, confidence=0.9)[0].active
    assert next_due(p.state) is None
    assert p.see(1, confidence=0.2) == (Change(False, at(1), ("o2",)),)


# Order and duplicates -----------------------------------------------------------------------


def test_a_duplicate_changes_nothing_not_even_the_state() -> None:
    p = Point(rule(ConditionType.HIGH, setpoint=10.0))
    p.see(0, 12.0, id="a")
    before = p.state
    assert p.see(0, 12.0, id="a") == ()
    assert p.state is before


def test_a_late_observation_is_ignored_and_counted() -> None:
    p = Point(rule(ConditionType.HIGH, setpoint=10.0))
    p.see(10, 12.0)
    assert p.see(5, 0.0) == ()
    assert p.active and p.state.ignored == 1


def test_two_observations_at_the_same_instant_are_both_applied() -> None:
    p = Point(rule(ConditionType.HIGH, setpoint=10.0))
    p.see(0, 12.0, id="a")
    assert p.see(0, 1.0, id="b") == (Change(False, at(0), ("b",)),)


def test_changes_never_go_back_in_time() -> None:
    p = Point(rule(ConditionType.STALE, stale_after=timedelta(seconds=60)))
    p.see(0)
    p.tick(100)  # stale at 60 ...
    # ... then a reading of 50 s, delayed in transit, arrives: it clears, but not before 60.
    assert p.see(50) == (Change(False, at(60), ("o2",)),)


def test_the_state_is_immutable() -> None:
    state = ConditionState()
    with pytest.raises(AttributeError):
        state.active = True  # type: ignore[misc]


def test_the_quality_number_off_the_bus_is_understood_as_it_comes() -> None:
    assert [int(q) for q in Quality] == [
        contracts.Quality.QUALITY_UNSPECIFIED,
        contracts.Quality.QUALITY_GOOD,
        contracts.Quality.QUALITY_UNCERTAIN,
        contracts.Quality.QUALITY_BAD,
    ]
    p = Point(rule(ConditionType.BAD_QUALITY))
    assert p.see(0, 1.0, quality=int(contracts.Quality.QUALITY_BAD))[0].active


@pytest.mark.parametrize(
    "r",
    [
        rule(ConditionType.HIGH, setpoint=10.0, on_delay=timedelta(seconds=5)),
        rule(ConditionType.RATE_OF_RISE, setpoint=1.0, on_delay=timedelta(seconds=5)),
        detection(persistence_count=2),
    ],
)
def test_a_pending_timer_is_data_that_survives_a_restart(r: Rule) -> None:
    p = Point(r)
    p.see(0, 0.0, confidence=0.9)
    p.see(1, 20.0, confidence=0.9)
    assert next_due(p.state) is not None
    # What the service stores, and reads back after a restart.
    stored = msgspec.msgpack.encode(p.state)
    restored = msgspec.msgpack.decode(stored, type=ConditionState)
    assert restored == p.state
    due = next_due(restored)
    assert due is not None
    _, changes = on_timer(r, restored, due + timedelta(minutes=1))
    assert [c.at for c in changes] == [due]
