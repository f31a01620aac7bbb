"""The IoU tracker (ids, debouncing) and the zone rules (intrusion, loitering) on its tracks."""

from __future__ import annotations

from services.video.domain.detection import Detection
from services.video.domain.geometry import Box
from services.video.domain.rules import CameraZone, RuleKind, ZoneRule, ZoneRules
from services.video.domain.tracker import IouTracker

LOWER_HALF = ((0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0))
PEOPLE = frozenset({"person"})


def person(x: float, y: float, confidence: float = 0.9, label: str = "person") -> Detection:
    """A 20 x 40 person whose box's top-left is (x, y), in a 100 x 100 frame."""
    return Detection(Box(x, y, x + 20, y + 40), confidence, label)


def test_a_detection_becomes_a_track_only_after_min_hits_frames() -> None:
    tracker = IouTracker(min_hits=3)
    assert tracker.update([person(10, 10)], 0.0) == []
    assert tracker.update([person(11, 10)], 0.5) == []
    confirmed = tracker.update([person(12, 10)], 1.0)
    assert [t.id for t in confirmed] == [1]


def test_a_single_spurious_detection_never_confirms() -> None:
    tracker = IouTracker(min_hits=2)
    tracker.update([person(10, 10)], 0.0)
    assert tracker.update([], 0.5) == []
    assert tracker.update([person(70, 50)], 1.0) == []  # elsewhere: another object, not a second hit


def test_a_moving_object_keeps_its_id_and_two_objects_get_two() -> None:
    tracker = IouTracker(min_hits=1)
    first = tracker.update([person(10, 10), person(60, 10)], 0.0)
    ids = {t.id for t in first}
    later = first
    for step in range(1, 6):
        later = tracker.update([person(10 + 3 * step, 10), person(60 - 3 * step, 10)], step * 0.5)
    assert {t.id for t in later} == ids and len(ids) == 2


def test_a_track_survives_a_missed_frame_and_is_dropped_after_max_missed() -> None:
    tracker = IouTracker(min_hits=1, max_missed=2)
    (track,) = tracker.update([person(10, 10)], 0.0)
    tracker.update([], 0.5)
    tracker.update([], 1.0)
    assert [t.id for t in tracker.update([person(10, 10)], 1.5)] == [track.id]
    for t in (2.0, 2.5, 3.0):
        tracker.update([], t)
    assert [t.id for t in tracker.update([person(10, 10)], 3.5)] != [track.id]


def test_labels_are_not_mixed_up() -> None:
    tracker = IouTracker(min_hits=1)
    (p,) = tracker.update([person(10, 10)], 0.0)
    (other,) = tracker.update([person(10, 10, label="forklift")], 0.5)
    assert other.id != p.id


def walk(rules: ZoneRules, tracker: IouTracker, ys: list[float], start: float = 0.0, dt: float = 0.5) -> list:
    fired = []
    for i, y in enumerate(ys):
        now = start + i * dt
        fired += rules.evaluate(tracker.update([person(40, y)], now), 100, 100, now)
    return fired


def test_intrusion_fires_once_when_a_confirmed_person_steps_into_the_zone() -> None:
    rules = ZoneRules([CameraZone("bund", LOWER_HALF, (ZoneRule(RuleKind.INTRUSION, PEOPLE),))])
    tracker = IouTracker(min_hits=2)
    # Feet at y = 40, 45, 50 (the edge: inside), 55, 60: one firing, on entering.
    fired = walk(rules, tracker, [0, 5, 10, 15, 20])
    assert [(f.rule, f.zone, f.track_id, f.time) for f in fired] == [(RuleKind.INTRUSION, "bund", 1, 1.0)]


def test_intrusion_fires_again_after_leaving_and_coming_back() -> None:
    rules = ZoneRules([CameraZone("bund", LOWER_HALF, (ZoneRule(RuleKind.INTRUSION, PEOPLE),))])
    tracker = IouTracker(min_hits=1, min_iou=0.1)
    fired = walk(rules, tracker, [15, 15, 5, 5, 15])
    assert [f.time for f in fired] == [0.0, 2.0]


def test_a_rule_watches_only_its_labels() -> None:
    rules = ZoneRules(
        [CameraZone("bund", LOWER_HALF, (ZoneRule(RuleKind.INTRUSION, frozenset({"forklift"})),))]
    )
    assert walk(rules, IouTracker(min_hits=1), [20, 20, 20]) == []


def test_loitering_fires_after_t_seconds_in_the_zone_and_once() -> None:
    rules = ZoneRules([CameraZone("gate", LOWER_HALF, (ZoneRule(RuleKind.LOITERING, PEOPLE, seconds=3.0),))])
    tracker = IouTracker(min_hits=1)
    fired = walk(rules, tracker, [20] * 12)  # 0.0 .. 5.5 s in the zone
    assert [(f.rule, f.time, f.dwell_s) for f in fired] == [(RuleKind.LOITERING, 3.0, 3.0)]


def test_loitering_time_starts_again_after_leaving() -> None:
    rules = ZoneRules([CameraZone("gate", LOWER_HALF, (ZoneRule(RuleKind.LOITERING, PEOPLE, seconds=2.0),))])
    tracker = IouTracker(min_hits=1, min_iou=0.1)
    # 1.5 s in, out, 1.5 s in: never 2 s at a stretch.
    assert walk(rules, tracker, [20, 20, 20, 20, 5, 20, 20, 20, 20]) == []


def test_a_person_standing_still_goes_on_loitering_while_motion_gating_skips_detection() -> None:
    rules = ZoneRules([CameraZone("gate", LOWER_HALF, (ZoneRule(RuleKind.LOITERING, PEOPLE, seconds=3.0),))])
    tracker = IouTracker(min_hits=1)
    rules.evaluate(tracker.update([person(40, 20)], 0.0), 100, 100, 0.0)
    fired = []
    for step in range(1, 8):  # no motion: detection is not run, the track is held
        fired += rules.evaluate(tracker.hold(step * 0.5), 100, 100, step * 0.5)
    assert [f.time for f in fired] == [3.0]


def lying(x: float, y: float, label: str = "person") -> Detection:
    """A 40 x 15 box (a person lying) whose top-left is (x, y)."""
    return Detection(Box(x, y, x + 40, y + 15), 0.8, label)


def down_rules(seconds: float = 3.0, down_labels: frozenset[str] = frozenset()) -> ZoneRules:
    rule = ZoneRule(RuleKind.PERSON_DOWN, PEOPLE, seconds=seconds, down_labels=down_labels)
    return ZoneRules([CameraZone("floor", LOWER_HALF, (rule,))])


def run(rules: ZoneRules, detections: list[Detection], dt: float = 0.5) -> list:
    tracker = IouTracker(min_hits=1, min_iou=0.2)
    fired = []
    for i, det in enumerate(detections):
        fired += rules.evaluate(tracker.update([det], i * dt), 100, 100, i * dt)
    return fired


def test_a_person_lying_still_for_t_seconds_is_down_once() -> None:
    # Standing (20 x 40) two frames, then lying where they fell for 4 s.
    frames = [person(40, 40), person(40, 42)] + [lying(30, 70)] * 9
    fired = run(down_rules(3.0), frames)
    assert [(f.rule, f.zone, f.time) for f in fired] == [(RuleKind.PERSON_DOWN, "floor", 4.0)]


def test_a_person_who_gets_up_is_not_down_and_a_second_fall_fires_again() -> None:
    frames = [lying(30, 70)] * 3 + [person(40, 50)] * 2 + [lying(30, 70)] * 8
    fired = run(down_rules(3.0), frames)
    # 1.0 s down then up: nothing; down again from 2.5 s: fires at 5.5 s.
    assert [f.time for f in fired] == [5.5]


def test_a_horizontal_box_that_keeps_moving_is_not_down() -> None:
    # Someone carrying a long load, or crawling through: wide, but never still.
    frames = [lying(5 + 6 * i, 70) for i in range(10)]
    assert run(down_rules(2.0), frames) == []


def test_a_fall_class_is_down_whatever_its_box() -> None:
    rules = ZoneRules(
        [
            CameraZone(
                "floor",
                LOWER_HALF,
                (ZoneRule(RuleKind.PERSON_DOWN, frozenset({"Normal"}), 1.0, frozenset({"Fall"})),),
            )
        ]
    )
    tall_fall = Detection(Box(40, 40, 60, 80), 0.7, "Fall")
    fired = run(rules, [tall_fall] * 4)
    assert [(f.label, f.time) for f in fired] == [("Fall", 1.0)]
    # The fall model's Normal class standing upright is never down.
    assert run(rules, [Detection(Box(40, 40, 60, 80), 0.9, "Normal")] * 6) == []
