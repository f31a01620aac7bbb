"""Decoding YOLOv8-format output with ONNX Runtime, on tiny models built here with the onnx helper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from services.video.domain.letterbox import plan
from services.video.domain.yolo import OutputShapeError, check_shape, class_names, decode
from tests.video_models import constant_model

NAMES = ["person", "forklift"]


def candidates(*rows: tuple[float, float, float, float, float, float]) -> np.ndarray:
    """(1, 4 + 2, N) from rows of (cx, cy, w, h, person score, forklift score), in input pixels."""
    return np.array(rows, dtype=np.float32).T[np.newaxis]


def run(path: Path, size: int = 64) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    output: np.ndarray = session.run(None, {"images": np.zeros((1, 3, size, size), np.float32)})[0]
    return output


def test_decode_thresholds_and_suppresses_class_by_class(tmp_path: Path) -> None:
    output = candidates(
        (32, 32, 20, 40, 0.9, 0.1),  # a person
        (33, 32, 20, 40, 0.8, 0.0),  # the same person again, weaker: suppressed
        (33, 33, 20, 40, 0.0, 0.7),  # a forklift in the same place: another class, kept
        (10, 10, 4, 4, 0.2, 0.1),  # under the threshold
    )
    model = constant_model(tmp_path / "m.onnx", output, names=NAMES)
    found = decode(run(model), plan(64, 64, 64, 64), NAMES, confidence=0.25, iou=0.45)
    assert [(d.label, round(d.confidence, 3)) for d in found] == [("person", 0.9), ("forklift", 0.7)]
    person = found[0].box
    assert (person.x1, person.y1, person.x2, person.y2) == pytest.approx((22, 12, 42, 52))


def test_boxes_come_back_to_the_pixels_of_a_non_square_frame(tmp_path: Path) -> None:
    # A 1280 x 720 frame in a 64 x 64 input: scaled by 0.05 to 64 x 36, 14 pixels of padding on top.
    output = candidates((32, 32, 10, 20, 0.95, 0.0))
    model = constant_model(tmp_path / "m.onnx", output, names=NAMES)
    found = decode(run(model), plan(1280, 720, 64, 64), NAMES, confidence=0.5, iou=0.45)
    box = found[0].box
    assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx((540, 160, 740, 560))


def test_overlapping_boxes_of_one_class_below_the_iou_threshold_are_both_kept(tmp_path: Path) -> None:
    output = candidates((20, 32, 20, 20, 0.9, 0.0), (36, 32, 20, 20, 0.8, 0.0))  # IoU 4/36
    found = decode(
        run(constant_model(tmp_path / "m.onnx", output)),
        plan(64, 64, 64, 64),
        NAMES,
        confidence=0.5,
        iou=0.45,
    )
    assert len(found) == 2


def test_nothing_over_the_threshold_finds_nothing(tmp_path: Path) -> None:
    output = candidates((20, 32, 20, 20, 0.1, 0.2))
    found = decode(
        run(constant_model(tmp_path / "m.onnx", output)),
        plan(64, 64, 64, 64),
        NAMES,
        confidence=0.5,
        iou=0.45,
    )
    assert found == []


def test_an_output_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(OutputShapeError, match=r"\(1, 6, N\)"):
        check_shape((1, 84, 8400), 2)
    with pytest.raises(OutputShapeError):
        check_shape((1, 8400, 6), 2)  # transposed: an older export
    check_shape((1, 6, "anchors"), 2)


def test_class_names_come_from_the_model_metadata(tmp_path: Path) -> None:
    model = constant_model(tmp_path / "m.onnx", candidates((1, 1, 1, 1, 0, 0)), names=NAMES)
    meta = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_modelmeta()
    assert class_names(meta.custom_metadata_map, 2) == NAMES
    assert class_names({}, 2) == ["class0", "class1"]
