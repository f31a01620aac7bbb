"""What a unit of work writes back: every point changed, and the mere progress of the others
(the time and ids of what was applied) only every PROGRESS_EVERY of observation time."""

from __future__ import annotations

from services.alarms.domain import evaluate
from services.alarms.domain.engine import Loaded, PointRecord, Workset
from services.alarms.domain.evaluate import ConditionState, Sample
from services.alarms.domain.state import PointState
from services.alarms.domain.workset import PROGRESS_EVERY, Handling, progress_due
from tests.unit.alarm_engine_builders import RULES, T0, at, engine, obs, point

HIGH = RULES[0]  # lel-high: set-point 20, no delays


def test_a_reading_that_changes_nothing_is_progress_only() -> None:
    before = evaluate.initial(HIGH, T0)
    after, changes = evaluate.apply(HIGH, before, Sample("a", at(1), 1.0))
    assert changes == ()
    assert evaluate.only_progress(before, after)
    assert after.last_at == at(1) and after.last_ids == ("a",)


def test_a_reading_that_moves_the_condition_or_a_timer_is_not() -> None:
    before = evaluate.initial(HIGH, T0)
    raised, _ = evaluate.apply(HIGH, before, Sample("a", at(1), 25.0))
    assert not evaluate.only_progress(before, raised)
    stale = RULES[2]
    armed = evaluate.initial(stale, T0)
    moved, _ = evaluate.apply(stale, armed, Sample("b", at(1), 1.0))
    assert moved.due != armed.due and not evaluate.only_progress(armed, moved)
    pending = ConditionState(raw=True, due=at(5), pending_ids=("c",), last_at=at(3))
    assert not evaluate.only_progress(pending, pending._replace(due=None, pending_ids=()))


def _record(last: float) -> PointRecord:
    p = point("gd-1", "lel-high")
    return PointRecord(PointState(p), ConditionState(last_at=at(last), last_ids=("x",)))


def test_progress_is_written_once_it_is_progress_every_old() -> None:
    step = PROGRESS_EVERY.total_seconds()
    assert not progress_due(_record(0), _record(step - 0.5))
    assert progress_due(_record(0), _record(step))
    assert progress_due(PointRecord(PointState(point("gd-1", "lel-high"))), _record(1))


def test_the_workset_writes_changed_points_and_progress_that_is_due() -> None:
    eng = engine()
    loaded = {
        point("gd-1", "lel-high"): _record(0),
        point("gd-2", "lel-high"): _record(0),
    }
    work = Workset()
    for p, record in loaded.items():
        work.points[p] = record
        work.loaded[p] = Loaded(record, "high", "high", "safety", latched=False)
    step = PROGRESS_EVERY.total_seconds()
    # gd-1: a normal reading soon after; gd-2: one PROGRESS_EVERY later; gd-3: never seen before.
    eng.observe(
        work,
        [
            obs("a", 1, 1.0, device="gd-1"),
            obs("b", step, 1.0, device="gd-2"),
            obs("c", 1, 1.0, device="gd-3"),
        ],
    )
    to_write = {(p.device, p.rule) for p in work.to_write()}
    assert ("gd-1", "lel-high") not in to_write
    assert ("gd-2", "lel-high") in to_write
    assert {("gd-3", "lel-high"), ("gd-3", "lel-stale")} <= to_write
    # gd-1's high point still applied the reading: a copy of it is a duplicate.
    high = work.points[point("gd-1", "lel-high")].condition
    assert high is not None and high.last_ids == ("a",)


def test_a_loaded_point_shows_as_its_row_until_its_state_or_rule_fields_change() -> None:
    record = _record(0)
    loaded = Loaded(record, "high", "high", "safety", latched=False)
    handling = Handling.of_rule(HIGH)
    assert loaded.shows_as(record, handling)
    moved = PointRecord(record.state, record.condition._replace(last_at=at(3)) if record.condition else None)
    assert loaded.shows_as(moved, handling)
    assert not Loaded(record, "high", "medium", "safety", latched=False).shows_as(record, handling)
    flagged = PointRecord(record.state, record.condition, flags=frozenset({"fleeting"}))
    assert not loaded.shows_as(flagged, handling)
