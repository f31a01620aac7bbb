"""The video service's OpenCV and ONNX Runtime adapters, on frames and models made here."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from services.video.adapters.detectors import DetectorError, HogDetector, OnnxDetector
from services.video.adapters.faces import FaceBlur
from services.video.adapters.motion import MotionGate
from services.video.adapters.source import FrameSource, SourceError, _redacted
from services.video.config import DetectorConfig, MotionConfig
from tests.video_models import astronaut, constant_model, green_box_model, intrusion_clip


def scene(height: int = 240, width: int = 320) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(40, 90, (height, width, 3), dtype=np.uint8)


def with_square(frame: np.ndarray, x: int, y: int, size: int = 30) -> np.ndarray:
    copy = frame.copy()
    copy[y : y + size, x : x + size] = (0, 255, 0)
    return copy


def test_a_static_scene_is_gated_off_and_movement_is_not() -> None:
    gate = MotionGate(MotionConfig())
    background = scene()
    warm_up = [gate.moving(background) for _ in range(30)]
    assert warm_up[0] is True  # nothing learnt yet: detect
    assert not any(warm_up[5:]), "a still picture keeps asking for detection"
    assert gate.moving(with_square(background, 100, 100))


def test_movement_inside_a_mask_does_not_count() -> None:
    # The right half (a road, say) is masked: a car crossing it does not wake the detector.
    gate = MotionGate(MotionConfig(masks=[[(0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)]]))
    background = scene()
    for _ in range(30):
        gate.moving(background)
    assert not gate.moving(with_square(background, 250, 100))
    assert gate.moving(with_square(background, 40, 100))


def test_the_onnx_detector_finds_a_figure_in_frame_pixels_of_a_non_square_frame(tmp_path: Path) -> None:
    model = green_box_model(tmp_path / "green.onnx", size=64)
    detector = OnnxDetector(DetectorConfig(kind="onnx", model=str(model), input_size=64))
    assert detector.names == ["person"]
    frame = np.full((480, 1280, 3), 70, np.uint8)  # 8:3, padded top and bottom
    frame[200:360, 600:680] = (0, 255, 0)
    (found,) = detector.detect(frame)
    assert found.label == "person" and found.confidence == pytest.approx(1.0)
    box = found.box
    # The input is 64 x 24 of the frame's 1280 x 480 (a 20x reduction): within a few input pixels.
    assert (box.x1, box.y1, box.x2, box.y2) == pytest.approx((600, 200, 680, 360), abs=30)
    assert detector.detect(np.full((480, 1280, 3), 70, np.uint8)) == []


def test_a_missing_model_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match="no model file"):
        OnnxDetector(DetectorConfig(kind="onnx", model=str(tmp_path / "absent.onnx")))


def test_a_file_that_is_not_onnx_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "fake.onnx"
    fake.write_text("not a model")
    with pytest.raises(DetectorError, match="not an ONNX model"):
        OnnxDetector(DetectorConfig(kind="onnx", model=str(fake)))


def test_a_model_with_another_output_shape_is_refused(tmp_path: Path) -> None:
    transposed = np.zeros((1, 10, 6), np.float32)  # (1, N, 4 + classes): not YOLOv8's layout
    model = constant_model(tmp_path / "t.onnx", transposed)
    with pytest.raises(DetectorError, match="YOLOv8-format"):
        OnnxDetector(DetectorConfig(kind="onnx", model=str(model)))
    # Two class names in the metadata, yet rows for three classes.
    three = constant_model(tmp_path / "n.onnx", np.zeros((1, 7, 20), np.float32), names=["person", "car"])
    with pytest.raises(DetectorError, match=r"\(1, 6, N\)"):
        OnnxDetector(DetectorConfig(kind="onnx", model=str(three)))
    flat = constant_model(tmp_path / "f.onnx", np.zeros((1, 6), np.float32))
    with pytest.raises(DetectorError, match="YOLOv8-format"):
        OnnxDetector(DetectorConfig(kind="onnx", model=str(flat)))


def test_the_hog_detector_finds_no_one_in_an_empty_yard() -> None:
    assert HogDetector(DetectorConfig()).detect(scene()) == []


def test_faces_are_pixelated_and_nothing_else_is() -> None:
    photo = cv2.resize(astronaut(), (256, 256))
    blur = FaceBlur()
    assert blur.faces(photo), "the photograph's face is not found"
    blurred, count = blur.blurred(photo)
    assert count >= 1
    assert blur.faces(blurred) == []
    # Most of the picture is untouched: only the faces' patches changed.
    changed = (np.abs(blurred.astype(int) - photo.astype(int)).sum(axis=2) > 0).mean()
    assert 0.0 < changed < 0.3


def test_a_video_file_is_played_in_a_loop(tmp_path: Path) -> None:
    clip = intrusion_clip(tmp_path / "clip.avi", frames=5)
    source = FrameSource(str(clip), is_stream=False, timeout_s=1.0)
    source.open()
    try:
        frames = [source.read() for _ in range(12)]
    finally:
        source.close()
    assert all(f is not None and f.shape == (240, 320, 3) for f in frames)
    assert source.fps == pytest.approx(20.0)
    # Frame 6 is frame 1 again: the figure is back where it started.
    assert np.array_equal(frames[5], frames[0])


class Counted:
    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


def test_an_mjpeg_file_is_read_as_packets_and_only_what_is_retrieved_is_decoded(tmp_path: Path) -> None:
    clip = intrusion_clip(tmp_path / "clip.avi", frames=10, width=640, height=480)
    decoded = Counted()
    source = FrameSource(str(clip), is_stream=False, timeout_s=1.0, width=320, decoded=decoded)
    source.open()
    try:
        assert source.raw
        for _ in range(25):  # past the end: the file starts again
            source.grab()
        frame = source.retrieve()
    finally:
        source.close()
    assert decoded.value == 1
    # 640 wide, analysed at 320: decoded at half scale.
    assert frame is not None and frame.shape == (240, 320, 3)
    # The same frame (the 5th, after two loops) decoded the way before, at full size, then halved.
    full = FrameSource(str(clip), is_stream=False, timeout_s=1.0, packets=False)
    full.open()
    try:
        expected = [full.read() for _ in range(5)][-1]
    finally:
        full.close()
    assert expected is not None
    halved = cv2.resize(expected, (320, 240), interpolation=cv2.INTER_AREA)
    assert np.abs(halved.astype(int) - frame.astype(int)).mean() < 4


def test_a_source_of_another_codec_is_decoded_frame_by_frame(tmp_path: Path) -> None:
    # MPEG-4 frames are coded against each other: each must be decoded, analysed or not.
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 20, (320, 240))
    for i in range(5):
        writer.write(np.full((240, 320, 3), 40 * i, np.uint8))
    writer.release()
    decoded = Counted()
    source = FrameSource(str(path), is_stream=False, timeout_s=1.0, width=160, decoded=decoded)
    source.open()
    try:
        assert not source.raw
        for _ in range(4):
            source.grab()
        frame = source.retrieve()
    finally:
        source.close()
    assert decoded.value == 4
    assert frame is not None and frame.shape == (240, 320, 3)  # scaled by the analysis, as before


def test_a_missing_file_or_a_dead_stream_does_not_open(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no video file"):
        FrameSource(str(tmp_path / "absent.avi"), is_stream=False, timeout_s=1.0).open()
    with pytest.raises(SourceError, match="cannot open"):
        FrameSource("http://127.0.0.1:9/mjpeg", is_stream=True, timeout_s=1.0).open()


def test_a_stream_password_never_shows_in_reports() -> None:
    assert _redacted("rtsp://admin:s3cret@10.0.0.5:554/stream1") == "rtsp://admin:***@10.0.0.5:554/stream1"
    assert _redacted("http://cam.local/mjpeg") == "http://cam.local/mjpeg"
