"""Directional line crossing on tracks: geometry, direction, and once per crossing."""

from __future__ import annotations

from datetime import UTC, datetime

from services.video.adapters.messages import firing_observation
from services.video.domain.detection import Detection
from services.video.domain.geometry import Box
from services.video.domain.lines import CameraLine, Direction, LineRules, crossing, side
from services.video.domain.rules import RuleKind
from services.video.domain.tracker import IouTracker

# A horizontal fence across the middle, drawn left to right: below it is its right side.
A, B = (0.1, 0.5), (0.9, 0.5)
PEOPLE = frozenset({"person"})


def test_sides_are_named_as_seen_walking_from_a_to_b() -> None:
    assert side(A, B, (0.5, 0.7)) > 0  # below: right
    assert side(A, B, (0.5, 0.3)) < 0  # above: left
    assert side(A, B, (0.5, 0.5)) == 0


def test_a_move_over_the_segment_is_a_crossing_with_its_direction() -> None:
    assert crossing(A, B, (0.5, 0.3), (0.5, 0.7)) is Direction.LEFT_TO_RIGHT
    assert crossing(A, B, (0.5, 0.7), (0.5, 0.3)) is Direction.RIGHT_TO_LEFT


def test_passing_beside_the_segment_or_touching_it_is_not_a_crossing() -> None:
    assert crossing(A, B, (0.95, 0.3), (0.95, 0.7)) is None  # beyond its end
    assert crossing(A, B, (0.5, 0.3), (0.5, 0.5)) is None  # onto the line, not over it
    assert crossing(A, B, (0.2, 0.3), (0.8, 0.3)) is None  # along it


def walk(rules: LineRules, ys: list[float]) -> list:
    tracker = IouTracker(min_hits=1, min_iou=0.05)
    fired = []
    for i, y in enumerate(ys):
        # 100 x 100 frame: a 10 x 20 person whose feet are at y.
        tracks = tracker.update([Detection(Box(45, y - 20, 55, y), 0.9, "person")], i * 0.5)
        fired += rules.evaluate(tracks, 100, 100, i * 0.5)
    return fired


def test_a_crossing_fires_once_in_the_watched_direction_only() -> None:
    fence = CameraLine("fence", A, B, Direction.LEFT_TO_RIGHT, PEOPLE)
    # Down over the fence (left to right), back up (not watched), down again.
    fired = walk(LineRules([fence]), [30, 40, 48, 53, 60, 52, 47, 40, 47, 55])
    assert [(f.rule, f.zone, f.direction, f.time) for f in fired] == [
        (RuleKind.LINE_CROSSING, "fence", "left_to_right", 1.5),
        (RuleKind.LINE_CROSSING, "fence", "left_to_right", 4.5),
    ]


def test_any_direction_counts_both_ways() -> None:
    fence = CameraLine("fence", A, B, Direction.ANY, PEOPLE)
    fired = walk(LineRules([fence]), [44, 56, 44])
    assert [f.direction for f in fired] == ["left_to_right", "right_to_left"]


def test_a_line_watches_only_its_labels() -> None:
    fence = CameraLine("fence", A, B, Direction.ANY, frozenset({"forklift"}))
    assert walk(LineRules([fence]), [44, 56, 44]) == []


def test_a_crossing_names_its_line_and_direction_in_the_observation() -> None:
    fence = CameraLine("fence", A, B, Direction.ANY, PEOPLE)
    (firing,) = walk(LineRules([fence]), [44, 56])
    item = firing_observation(
        firing,
        site="s",
        device="cam",
        taken=datetime(2026, 12, 1, tzinfo=UTC),
        frame=(100, 100),
        snapshot="x",
    )
    assert item.kind == "video.line_crossing"
    assert item.attributes["line"] == "fence" and item.attributes["direction"] == "left_to_right"
    assert "zone" not in item.attributes
