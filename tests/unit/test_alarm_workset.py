"""What a unit of work writes back: every point changed, and the mere progress of the others
(the time and ids of what was applied) only every PROGRESS_EVERY of observation time."""

from __future__ import annotations

from datetime import timedelta

import msgspec

from services.alarms.domain import evaluate, workset
from services.alarms.domain.actions import Shelve
from services.alarms.domain.evaluate import ConditionState, Sample
from services.alarms.domain.state import PointState
from services.alarms.domain.workset import (
    PROGRESS_EVERY,
    Handling,
    Loaded,
    PointRecord,
    Workset,
    decode_record,
    encode_record,
    progress_due,
)
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


def _transitions(work: Workset) -> list[tuple[str, str, str, object]]:
    return [
        (e.transition.point.alarm_id, e.transition.old.value, e.transition.new.value, e.transition.at)
        for e in work.emitted
    ]


def test_a_batch_mixing_quiet_and_changing_devices_yields_what_one_at_a_time_does() -> None:
    # gd-1 reads normal throughout (applied point by point); gd-2 and gd-3 cross the high set-point
    # in turn, so the 2oo3 group votes with gd-1 counted as heard and inactive; the pump's on-delay
    # falls due between two of its readings.
    first = [obs(f"a{n}", n, 1.0, device=d) for n in range(3) for d in ("gd-1", "gd-2", "gd-3")]
    first.append(obs("p0", 0, 1.0, device="vt-1", kind="vibration"))
    later = [
        *(obs(f"q{n}", 10 + n, 1.0 + n / 10, device="gd-1") for n in range(6)),
        obs("c2", 11, 25.0, device="gd-2"),
        obs("c3", 13, 30.0, device="gd-3"),
        obs("p1", 10, 6.0, device="vt-1", kind="vibration"),
        obs("p2", 17, 6.1, device="vt-1", kind="vibration"),
        obs("d2", 14, 1.0, device="gd-2"),
    ]
    together, alone = Workset(), Workset()
    eng = engine()
    eng.observe(together, first)
    eng.observe(together, later)
    for one in [*first, *sorted(later, key=lambda o: (o.at, o.id))]:
        eng.observe(alone, [one])
    assert _transitions(together) == _transitions(alone)
    assert ("lel-2oo3--vote", "NORM", "UNACK", at(13)) in _transitions(together)
    assert ("vt-1--vib-high", "NORM", "UNACK", at(15)) in _transitions(together)
    assert together.points == alone.points


def test_a_record_read_back_again_is_what_its_bytes_say_after_the_engine_worked_on_it() -> None:
    """Decoded records are remembered by their bytes: the engine must only ever replace a record,
    never change one, or a point read back later would start from the changed one."""
    eng = engine()
    first = Workset()
    eng.observe(first, [obs(f"o{i}", 10 * i, 45.0 if i % 2 == 0 else 1.0) for i in range(10)])
    stored = {p: bytes(encode_record(r)) for p, r in first.points.items()}

    second = Workset()
    for p, data in stored.items():
        second.points[p] = decode_record(data)
    eng.observe(second, [obs(f"p{i}", 200 + 10 * i, 45.0 if i % 3 == 0 else 1.0) for i in range(10)])
    eng.act(second, point("gd-1", "lel-high"), Shelve(at(400), "kim", "wash", None, timedelta(hours=8)))
    assert any(second.points[p] != first.points[p] for p in stored)

    for p, data in stored.items():
        again = decode_record(bytes(data))  # another bytes object with the same content
        assert again == first.points[p] == msgspec.msgpack.decode(data, type=PointRecord)


def test_remembered_records_are_bounded() -> None:
    base = next(iter(_records()))
    for n in range(workset._DECODED_MAX + 10):
        record = msgspec.structs.replace(base, flags=frozenset({f"f{n}"}))
        assert decode_record(encode_record(record)) == record
    assert len(workset._DECODED) <= workset._DECODED_MAX


def _records() -> list[PointRecord]:
    work = Workset()
    engine().observe(work, [obs("o1", 10, 45.0)])
    return list(work.points.values())
