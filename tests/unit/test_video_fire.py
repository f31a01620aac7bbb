"""The classical fire and smoke detector on synthetic frames (the simulated camera's, drawn from
a seed): a flickering orange blob is fire and a static orange square is not; a grey plume growing
slowly is smoke, and a static grey square or a grey figure walking past is not. Then the zone
rules: fire persisting `seconds`."""

from __future__ import annotations

import cv2
import msgspec
import numpy as np
import pytest

from services.simulator.camera_scene import GREY, HEIGHT, ORANGE, WIDTH, Image, flame, plume, yard
from services.video.adapters.detectors import build_detector
from services.video.adapters.fire import FireSmokeDetector, fire_colour
from services.video.config import CameraConfig, DetectorConfig, FireConfig, RuleConfig
from services.video.domain.detection import Detection
from services.video.domain.geometry import Box
from services.video.domain.rules import CameraZone, RuleKind, ZoneRule, ZoneRules
from services.video.domain.tracker import IouTracker

W, H = WIDTH, HEIGHT


def labels(found: list[Detection]) -> list[str]:
    return [d.label for d in found]


def run(detector: FireSmokeDetector, frames: list[Image]) -> list[list[Detection]]:
    return [detector.detect(frame) for frame in frames]


def test_flame_colour_is_orange_red_and_yellow_not_grey_green_or_blue() -> None:
    patches = {
        "orange": ORANGE,
        "red": (30, 30, 230),
        "grey": GREY,
        "green": (40, 200, 40),
        "blue": (230, 90, 20),
    }
    seen = {}
    for name, colour in patches.items():
        frame = np.full((20, 20, 3), colour, np.uint8)
        seen[name] = bool(fire_colour(frame).all())
    assert seen == {"orange": True, "red": True, "grey": False, "green": False, "blue": False}


def test_a_flickering_orange_blob_is_fire_where_it_burns() -> None:
    rng = np.random.default_rng(1)
    detector = FireSmokeDetector(FireConfig(window=8, smoke=False))
    frames = []
    for _ in range(16):
        frame = yard(rng)
        flame(rng, frame, 200, 200)
        frames.append(frame)
    results = run(detector, frames)
    # Nothing before the window is full: flicker needs frames to be judged on.
    assert all(r == [] for r in results[:7])
    for found in results[7:]:
        assert labels(found) == ["fire"], found
        box = found[0].box
        # Around the flame: its base at y 200 near x 200, within the picture's right half.
        assert box.x1 < 200 < box.x2 and box.y1 < 180 and 190 <= box.y2 <= 215, box
        assert 0.5 <= found[0].confidence <= 1.0


def test_a_static_orange_square_is_not_fire() -> None:
    rng = np.random.default_rng(2)
    detector = FireSmokeDetector(FireConfig(window=8, smoke=False))
    frames = []
    for _ in range(24):
        frame = yard(rng)
        cv2.rectangle(frame, (150, 120), (200, 180), ORANGE, -1)  # a sign, a sodium-orange tank
        frames.append(frame)
    assert all(r == [] for r in run(detector, frames))


def test_an_orange_object_passing_by_is_not_fire() -> None:
    rng = np.random.default_rng(3)
    detector = FireSmokeDetector(FireConfig(window=8, smoke=False))
    frames = []
    for step in range(24):
        frame = yard(rng)
        x = 10 + 12 * step  # an orange forklift driving across
        cv2.rectangle(frame, (x, 150), (x + 40, 190), ORANGE, -1)
        frames.append(frame)
    assert all(r == [] for r in run(detector, frames))


def test_a_grey_plume_growing_slowly_is_smoke() -> None:
    rng = np.random.default_rng(4)
    detector = FireSmokeDetector(FireConfig(window=8))
    frames = []
    for step in range(20):
        frame = yard(rng)
        plume(frame, step - 4, 160, 200)
        frames.append(frame)
    results = run(detector, frames)
    assert all(r == [] for r in results[:7])
    smoky = [labels(r) for r in results[12:]]
    assert all(found == ["smoke"] for found in smoky), smoky
    box = results[-1][0].box
    assert box.x1 < 160 < box.x2 and box.y2 > 180, box
    assert "fire" not in {d.label for r in results for d in r}


def test_a_static_grey_square_and_a_grey_figure_walking_past_are_not_smoke() -> None:
    rng = np.random.default_rng(5)
    square = FireSmokeDetector(FireConfig(window=8))
    walker = FireSmokeDetector(FireConfig(window=8))
    squares, walks = [], []
    for step in range(30):
        frame = yard(rng)
        if step >= 3:
            cv2.rectangle(frame, (100, 100), (160, 170), GREY, -1)  # a grey container put down
        squares.append(frame)
        frame = yard(rng)
        x = 5 + 10 * step
        cv2.rectangle(frame, (x, 120), (x + 20, 180), GREY, -1)  # a worker in grey overalls
        walks.append(frame)
    assert all(r == [] for r in run(square, squares))
    assert all(r == [] for r in run(walker, walks))


def test_the_fire_detector_runs_beside_the_object_detector_or_alone() -> None:
    rng = np.random.default_rng(6)
    alone = build_detector(DetectorConfig(kind="none"), FireConfig(window=4, smoke=False))
    beside = build_detector(DetectorConfig(kind="hog"), FireConfig(window=4, smoke=False))
    assert (alone.name, beside.name) == ("fire", "hog+fire")
    assert build_detector(DetectorConfig(kind="none")).detect(yard(rng)) == []
    for _ in range(6):
        frame = yard(rng)
        flame(rng, frame, 100, 180)
        found_alone, found_beside = alone.detect(frame), beside.detect(frame)
    assert labels(found_alone) == ["fire"] and "fire" in labels(found_beside)


def test_fire_and_smoke_rules_need_seconds_and_watch_their_own_labels() -> None:
    fire = RuleConfig(rule="fire", seconds=3)
    assert fire.watched == ("fire",)
    assert RuleConfig(rule="smoke", seconds=3).watched == ("smoke",)
    assert RuleConfig(rule="intrusion").watched == ("person",)
    assert RuleConfig(rule="fire", seconds=3, labels=["Fire"]).watched == ("Fire",)
    with pytest.raises(ValueError, match="needs `seconds`"):
        RuleConfig(rule="smoke")
    with pytest.raises(msgspec.ValidationError, match="takes no `model`"):
        msgspec.convert({"kind": "none", "model": "x.onnx"}, DetectorConfig)
    camera = msgspec.convert(
        {"site": "s", "device": "cam-1", "source": "a.avi", "detector": {"kind": "none"}, "fire": {}},
        CameraConfig,
    )
    assert camera.fire == FireConfig() and camera.detector.kind == "none"
    with pytest.raises(msgspec.ValidationError, match=r"fire.window"):
        msgspec.convert(
            {"site": "s", "device": "cam-1", "source": "a.avi", "fire": {"window": 2}}, CameraConfig
        )


def test_fire_persisting_seconds_in_the_zone_fires_once_and_a_flash_does_not() -> None:
    zone = CameraZone(
        "tank-farm",
        ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)),
        (
            ZoneRule(RuleKind.FIRE, frozenset({"fire"}), 3.0),
            ZoneRule(RuleKind.SMOKE, frozenset({"smoke"}), 5.0),
        ),
    )
    rules = ZoneRules([zone])
    tracker = IouTracker(min_hits=2, max_missed=1)
    # A flash: two frames of fire, then nothing: confirmed, but gone long before 3 s.
    fired = []
    for i, now in enumerate(x * 0.5 for x in range(10)):
        seen = [Detection(Box(40, 40, 60, 80), 0.8, "fire")] if i < 2 else []
        fired += rules.evaluate(tracker.update(seen, now), 100, 100, now)
    assert fired == []
    # A fire that burns on: one firing, 3 s after it was confirmed in the zone.
    for i in range(20):
        now = 10.0 + i * 0.5
        box = Box(40 + i % 2, 40, 60 + i % 3, 80)  # jittering, as flames do
        fired += [
            (f.rule, f.time, f.label)
            for f in rules.evaluate(tracker.update([Detection(box, 0.8, "fire")], now), 100, 100, now)
        ]
    assert fired == [(RuleKind.FIRE, 13.5, "fire")]

