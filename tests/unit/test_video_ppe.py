"""PPE violations: which items a tracked person is without, the rule over time, and the whole
per-frame pipeline (ONNX detector, tracker, rules) with a tiny PPE model built in the test."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import numpy as np
import pytest

from services.video.adapters.detectors import build_detector
from services.video.adapters.messages import firing_observation
from services.video.config import (
    CameraConfig,
    DetectorConfig,
    MotionConfig,
    PpeItemConfig,
    RuleConfig,
    TrackerConfig,
    ZoneConfig,
)
from services.video.domain.geometry import Box
from services.video.domain.ppe import PpeItem, missing_items
from services.video.domain.rules import CameraZone, RuleKind, ZoneRule, ZoneRules
from services.video.domain.tracker import Track
from services.video.worker import FrameAnalysis
from tests.video_models import constant_model

HELMET = PpeItem("helmet", frozenset({"helmet"}), frozenset({"no_helmet"}))
VEST = PpeItem("vest", frozenset({"vest"}), frozenset({"no_vest"}))
WHOLE = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))
NAMES = ["person", "helmet", "no_helmet", "vest", "no_vest"]


def track(id: int, label: str, box: tuple[float, float, float, float], confidence: float = 0.9) -> Track:
    return Track(id, label, Box(*box), confidence, 0.0, 0.0, confirmed=True)


WORKER = (10, 10, 30, 90)  # a person 20 x 80
HEAD = (14, 10, 26, 22)
TORSO = (12, 30, 28, 55)


def test_an_item_seen_missing_on_the_person_is_missing_and_one_seen_worn_is_not() -> None:
    person = track(1, "person", WORKER)
    tracks = [person, track(2, "no_helmet", HEAD, 0.7), track(3, "vest", TORSO)]
    assert missing_items(person, [person], tracks, [HELMET, VEST]) == (("helmet",), 0.7)
    tracks = [person, track(2, "helmet", HEAD), track(3, "vest", TORSO)]
    assert missing_items(person, [person], tracks, [HELMET, VEST]) == ((), 0.0)


def test_with_absence_classes_an_item_not_seen_at_all_is_not_a_violation() -> None:
    # The detector may miss a helmet for a frame; only a `no_helmet` on the person counts.
    person = track(1, "person", WORKER)
    assert missing_items(person, [person], [person], [HELMET])[0] == ()
    # A model without an absence class: the helmet not seen on the person is missing.
    worn_only = PpeItem("helmet", frozenset({"Hardhat"}))
    assert missing_items(person, [person], [person], [worn_only]) == (("helmet",), 0.9)
    hat = track(2, "Hardhat", HEAD)
    assert missing_items(person, [person], [person, hat], [worn_only])[0] == ()


def test_an_item_belongs_to_the_person_whose_box_holds_it_the_smallest_one() -> None:
    near = track(1, "person", WORKER)
    far = track(2, "person", (100, 10, 120, 90))
    # A big person box in front overlapping the first: the head is the smaller box's.
    big = track(3, "person", (0, 0, 60, 100))
    bare_head = track(4, "no_helmet", HEAD)
    people = [near, far, big]
    tracks = [*people, bare_head]
    assert missing_items(near, people, tracks, [HELMET])[0] == ("helmet",)
    assert missing_items(far, people, tracks, [HELMET])[0] == ()
    assert missing_items(big, people, tracks, [HELMET])[0] == ()


def rules(seconds: float = 2.0) -> ZoneRules:
    rule = ZoneRule(RuleKind.PPE_VIOLATION, frozenset({"person"}), seconds, ppe=(HELMET, VEST))
    return ZoneRules([CameraZone("unit-2", WHOLE, (rule,))])


def test_a_person_without_a_helmet_for_seconds_fires_once_and_again_after_wearing_it() -> None:
    zone = rules(2.0)
    person = track(1, "person", WORKER)
    bare = [person, track(2, "no_helmet", HEAD, 0.8)]
    fired = []
    for i in range(10):  # 0.0 .. 4.5 s without a helmet
        fired += zone.evaluate(bare, 100, 100, i * 0.5)
    assert [(f.rule, f.time, f.missing, f.confidence) for f in fired] == [
        (RuleKind.PPE_VIOLATION, 2.0, ("helmet",), 0.8)
    ]
    # Puts it on (a frame is enough), takes it off again: another violation 2 s later.
    assert zone.evaluate([person, track(3, "helmet", HEAD)], 100, 100, 5.0) == []
    later = [f.time for i in range(6) for f in zone.evaluate(bare, 100, 100, 5.5 + i * 0.5)]
    assert later == [7.5]


def test_a_person_wearing_it_all_or_outside_the_zone_never_fires() -> None:
    zone = rules(0.5)
    person = track(1, "person", WORKER)
    dressed = [person, track(2, "helmet", HEAD), track(3, "vest", TORSO)]
    assert [f for i in range(8) for f in zone.evaluate(dressed, 100, 100, i * 0.5)] == []
    right_half = ZoneRule(RuleKind.PPE_VIOLATION, frozenset({"person"}), 0.5, ppe=(HELMET,))
    elsewhere = ZoneRules([CameraZone("x", ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)), (right_half,))])
    bare = [person, track(2, "no_helmet", HEAD)]
    assert [f for i in range(8) for f in elsewhere.evaluate(bare, 100, 100, i * 0.5)] == []


def test_ppe_rules_default_to_helmet_and_vest_and_the_mapping_is_checked() -> None:
    rule = RuleConfig(rule="ppe_violation", seconds=5)
    assert set(rule.required) == {"helmet", "vest"}
    assert rule.required["helmet"].missing == ["no_helmet"]
    custom = msgspec.convert(
        {
            "rule": "ppe_violation",
            "seconds": 3,
            "ppe": {"helmet": {"worn": ["Hardhat"], "missing": ["NO-Hardhat"]}},
        },
        RuleConfig,
    )
    assert custom.required == {"helmet": PpeItemConfig(worn=["Hardhat"], missing=["NO-Hardhat"])}
    with pytest.raises(msgspec.ValidationError, match="needs `seconds`"):
        msgspec.convert({"rule": "ppe_violation"}, RuleConfig)
    with pytest.raises(msgspec.ValidationError, match="`ppe` is for ppe_violation"):
        msgspec.convert({"rule": "intrusion", "ppe": {"helmet": {"worn": ["helmet"]}}}, RuleConfig)
    with pytest.raises(msgspec.ValidationError, match=r"ppe.helmet.*worn|worn"):
        msgspec.convert({"rule": "ppe_violation", "seconds": 1, "ppe": {"helmet": {}}}, RuleConfig)


def candidates(*rows: tuple[str, float, float, float, float, float]) -> np.ndarray:
    """(1, 4 + 5, N) from rows of (class, cx, cy, w, h, score), in the model's 64 x 64 input."""
    out = np.zeros((1, 4 + len(NAMES), len(rows)), np.float32)
    for n, (label, cx, cy, w, h, score) in enumerate(rows):
        out[0, :4, n] = (cx, cy, w, h)
        out[0, 4 + NAMES.index(label), n] = score
    return out


def analysis(model: Path) -> FrameAnalysis:
    camera = CameraConfig(
        site="ulsan-refinery",
        device="cam-tf-501",
        source="unused.avi",
        analysis_fps=2.0,
        detector=DetectorConfig(kind="onnx", model=str(model), input_size=64, confidence=0.5),
        motion=MotionConfig(enabled=False),
        tracker=TrackerConfig(min_hits=2),
        zones=[
            ZoneConfig(id="unit-2", polygon=list(WHOLE), rules=[RuleConfig(rule="ppe_violation", seconds=2)])
        ],
    )
    return FrameAnalysis(camera, build_detector(camera.detector))


def test_a_ppe_model_run_on_frames_reports_the_worker_without_a_helmet(tmp_path: Path) -> None:
    # A worker standing at the centre of a 64 x 64 picture with a vest, and a bare head.
    bare = candidates(
        ("person", 32, 32, 16, 48, 0.9),
        ("no_helmet", 32, 12, 8, 8, 0.8),
        ("vest", 32, 28, 12, 14, 0.85),
    )
    dressed = candidates(
        ("person", 32, 32, 16, 48, 0.9),
        ("helmet", 32, 12, 8, 8, 0.8),
        ("vest", 32, 28, 12, 14, 0.85),
    )
    frame = np.full((128, 128, 3), 90, np.uint8)  # 2 x the model's input: boxes come back doubled
    for name, output, expected in (("bare", bare, [("helmet",)]), ("dressed", dressed, [])):
        run = analysis(constant_model(tmp_path / f"{name}.onnx", output, names=NAMES))
        fired = [f for i in range(12) for f in run.frame(frame, i * 0.5)[1]]
        assert [f.missing for f in fired] == expected, name
    again = analysis(tmp_path / "bare.onnx")
    (firing,) = [f for i in range(12) for f in again.frame(frame, i * 0.5)[1]]
    # Confirmed on the second frame (0.5 s), without the helmet since then: fires at 2.5 s.
    assert (firing.rule, firing.time, firing.label, firing.confidence) == (
        RuleKind.PPE_VIOLATION,
        2.5,
        "person",
        pytest.approx(0.8),
    )
    assert firing.box == Box(48, 16, 80, 112)
    observation = firing_observation(
        firing,
        site="ulsan-refinery",
        device="cam-tf-501",
        taken=datetime.now(UTC),
        frame=(128, 128),
        snapshot="r",
    )
    assert observation.kind == "video.ppe_violation"
    assert observation.attributes["missing"] == "helmet"
    assert observation.attributes["zone"] == "unit-2"
