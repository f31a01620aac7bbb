"""The video pipeline on recorded footage of real people, and the fall model on them.

The footage is OpenCV's sample `vtest.avi` (people walking across a campus, 768 x 576 at 10
frames/s; from Debian's opencv-doc package, Apache-2.0 AND BSD-3-Clause), and the fall model the
one `safetyhub models install fall` installs. Neither is committed: scripts/fetch_test_media.sh
(run by scripts/test.sh) fetches both into $SAFETYHUB_TEST_MEDIA or ~/.cache/safetyhub/test-media;
a test whose file could not be fetched skips, naming it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from services.video.adapters.detectors import build_detector
from services.video.adapters.source import Frame
from services.video.config import CameraConfig, DetectorConfig, RuleConfig, TrackerConfig, ZoneConfig
from services.video.domain.detection import Detection
from services.video.domain.geometry import Box, foot_in
from services.video.worker import FrameAnalysis

_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
MEDIA = Path(os.environ.get("SAFETYHUB_TEST_MEDIA") or _CACHE / "safetyhub" / "test-media")
VTEST = MEDIA / "vtest.avi"
FALL = MEDIA / "models" / "fall.onnx"
FETCH = "scripts/fetch_test_media.sh fetches it"

needs_footage = pytest.mark.skipif(
    not VTEST.is_file(), reason=f"no {VTEST} ({FETCH}: apt-get download opencv-doc)"
)
needs_fall_model = pytest.mark.skipif(
    not (VTEST.is_file() and FALL.is_file()),
    reason=f"no {FALL} or {VTEST} ({FETCH}: safetyhub models install fall)",
)

# A band across the middle of the square the people walk over (fractions of the picture).
CROSSING = [(0.40, 0.40), (0.60, 0.40), (0.60, 0.80), (0.40, 0.80)]


def footage(start: int, stop: int, step: int = 1) -> Iterator[tuple[int, Frame]]:
    capture = cv2.VideoCapture(str(VTEST))
    try:
        for index in range(stop):
            ok, frame = capture.read()
            assert ok, f"{VTEST} ended at frame {index}"
            if index >= start and (index - start) % step == 0:
                yield index, frame
    finally:
        capture.release()


def camera(**changes: object) -> CameraConfig:
    settings: dict[str, object] = {
        "site": "ulsan-refinery",
        "device": "cam-tf-501",
        "source": str(VTEST),
        "tracker": TrackerConfig(min_hits=3, max_missed=3),
        **changes,
    }
    return CameraConfig(**settings)  # type: ignore[arg-type]


@needs_footage
def test_people_walking_are_detected_tracked_and_one_crossing_into_a_zone_is_an_intrusion() -> None:
    watched = camera(zones=[ZoneConfig(id="square", polygon=CROSSING, rules=[RuleConfig(rule="intrusion")])])
    analysis = FrameAnalysis(watched, build_detector(watched.detector))
    feet: dict[int, list[tuple[float, bool]]] = {}  # track id -> (x of its foot, in the zone?) per frame
    intrusions = []
    for index, frame in footage(180, 290, step=2):  # 11 s, analysed at 5 frames/s
        analysed, firings = analysis.frame(frame, index / 10.0)
        height, width = analysed.shape[:2]
        for track in analysis.tracker.tracks:
            if track.confirmed and track.missed == 0:
                inside = foot_in(tuple(CROSSING), track.box, width, height)
                feet.setdefault(track.id, []).append((track.box.bottom_centre()[0] / width, inside))
        intrusions += [(index, f) for f in firings]
    # People are found and followed: one person keeps one id over 2 s or more while walking
    # across a sixth of the picture or more.
    walked = {tid: abs(p[-1][0] - p[0][0]) for tid, p in feet.items() if len(p) >= 10}
    assert walked and max(walked.values()) >= 0.15, feet
    # Somebody walked into the band: an intrusion, by a track first seen outside it.
    assert intrusions, feet
    for _, firing in intrusions:
        assert firing.zone == "square" and firing.label == "person"
        assert not feet[firing.track_id][0][1], f"track {firing.track_id} was in the zone from the start"


class Counting:
    """A detector that finds nothing and counts the frames the motion gate let through."""

    name = "counting"

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, frame: Frame) -> list[Detection]:
        self.calls += 1
        return []


@needs_footage
def test_a_static_scene_is_gated_off_and_people_walking_are_not() -> None:
    # The square at one moment, held still with a camera's sensor noise: the detector does not run.
    (_, still) = next(footage(0, 1))
    rng = np.random.default_rng(11)
    static = Counting()
    analysis = FrameAnalysis(camera(), static)
    for i in range(40):
        noisy = np.clip(still.astype(np.int16) + rng.normal(0, 2.0, still.shape).astype(np.int16), 0, 255)
        analysis.frame(noisy.astype(np.uint8), i * 0.5)
    assert static.calls <= 3, f"the detector ran on {static.calls} of 40 frames of a still scene"
    # The same camera's footage with people walking: the detector runs on nearly every frame.
    moving = Counting()
    analysis = FrameAnalysis(camera(), moving)
    for index, frame in footage(0, 80, step=2):
        analysis.frame(frame, index / 10.0)
    assert moving.calls >= 36, f"the detector ran on only {moving.calls} of 40 frames with people walking"


def person_on_the_lawn(*, lying: bool, clockwise: bool = True) -> npt.NDArray[np.uint8]:
    """A woman walking on the square (the footage's first frame), twice her size, standing on the
    lawn of the same footage, or the same picture of her turned on its side, lying there."""
    (_, frame) = next(footage(0, 1))
    lawn = cv2.resize(np.ascontiguousarray(frame[320:490, 0:300]), (640, 360))
    person = cv2.resize(frame[232:325, 630:690], None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)
    if lying:
        person = cv2.rotate(person, cv2.ROTATE_90_CLOCKWISE if clockwise else cv2.ROTATE_90_COUNTERCLOCKWISE)
    height, width = person.shape[:2]
    top, left = 350 - height, 320 - width // 2
    lawn[top : top + height, left : left + width] = person
    return lawn.astype(np.uint8)


PLACE = Box(200, 100, 440, 360)  # where she is on the lawn, standing or lying


@needs_fall_model
def test_the_fall_model_finds_a_lying_person_fallen_and_a_standing_one_not() -> None:
    detector = build_detector(DetectorConfig(kind="onnx", model=str(FALL), confidence=0.4))

    def labels(picture: npt.NDArray[np.uint8]) -> set[str]:
        return {d.label for d in detector.detect(picture) if d.box.iou(PLACE) > 0.1}

    assert detector.detect(person_on_the_lawn(lying=False)), "nobody found on the lawn"
    assert labels(person_on_the_lawn(lying=False)) == {"Normal"}
    assert labels(person_on_the_lawn(lying=True)) == {"Fall"}
    assert labels(person_on_the_lawn(lying=True, clockwise=False)) == {"Fall"}
