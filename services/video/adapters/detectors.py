"""Detectors behind one interface: a frame in, detections in frame pixels out.

- `HogDetector`: OpenCV's built-in HOG people detector; needs no model file.
- `OnnxDetector`: any YOLOv8-format ONNX model (`(1, 4 + classes, N)` output), through ONNX
  Runtime on the CPU; class names from the model's metadata when it has them.
- `FireSmokeDetector` (fire.py): fire and smoke by colour and flicker, beside one of the others.

Both are blocking and used only from a camera's worker thread. A model that is missing, not
ONNX, or of the wrong output shape raises DetectorError when the detector is built.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from services.common.errors import SafetyhubError
from services.video.adapters.fire import FireSmokeDetector
from services.video.adapters.source import Frame
from services.video.config import DetectorConfig, FireConfig
from services.video.domain.detection import Detection
from services.video.domain.geometry import Box
from services.video.domain.letterbox import Letterbox, plan
from services.video.domain.yolo import OutputShapeError, check_shape, class_names, decode

_PAD = 114  # the grey Ultralytics pads with; models are trained on it


class DetectorError(SafetyhubError):
    """A detector that cannot be built from its configuration."""


class Detector(Protocol):
    name: str

    def detect(self, frame: Frame) -> list[Detection]: ...


class HogDetector:
    name = "hog"

    def __init__(self, config: DetectorConfig) -> None:
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())  # type: ignore[attr-defined]
        self._confidence = config.confidence
        self._iou = config.iou

    def detect(self, frame: Frame) -> list[Detection]:
        rects, weights = self._hog.detectMultiScale(frame, winStride=(8, 8), padding=(8, 8), scale=1.05)
        if len(rects) == 0:
            return []
        # The SVM margin as a 0..1 confidence: 0.5 at the decision boundary.
        scores = [1.0 / (1.0 + math.exp(-float(w))) for w in np.asarray(weights).reshape(-1)]
        boxes = [[int(v) for v in r] for r in rects]
        keep = cv2.dnn.NMSBoxes(boxes, scores, self._confidence, self._iou)
        found = []
        for i in np.asarray(keep).reshape(-1):
            x, y, w, h = boxes[int(i)]
            found.append(Detection(Box(x, y, x + w, y + h), scores[int(i)], "person"))
        return sorted(found, key=lambda d: -d.confidence)


class OnnxDetector:
    name = "onnx"

    def __init__(self, config: DetectorConfig) -> None:
        path = Path(config.model or "")
        if not path.is_file():
            raise DetectorError(f"no model file {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.threads
        options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # ONNX Runtime raises its own untyped errors for a bad file
            raise DetectorError(f"{path} is not an ONNX model ONNX Runtime can load: {err}") from err
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise DetectorError(f"{path}: expected one image input (1, 3, H, W)")
        shape = inputs[0].shape
        self._height = shape[2] if isinstance(shape[2], int) else config.input_size
        self._width = shape[3] if isinstance(shape[3], int) else config.input_size
        self._half = inputs[0].type == "tensor(float16)"
        out_shape = outputs[0].shape
        metadata = session.get_modelmeta().custom_metadata_map
        classes = out_shape[1] - 4 if len(out_shape) == 3 and isinstance(out_shape[1], int) else -1
        named = len(class_names(metadata, 0, strict=True))
        try:
            check_shape(out_shape, named or classes)
            # Without names to count, (1, N, 4 + classes), an older export's layout, read as
            # YOLOv8's gives more rows than candidates: no real detector has that.
            if not named and isinstance(out_shape[2], int) and out_shape[2] < 4 + classes:
                raise OutputShapeError(f"output shape {list(out_shape)} has fewer candidates than rows")
        except OutputShapeError as err:
            raise DetectorError(f"{path}: {err}; a YOLOv8-format model is needed") from err
        self.names = class_names(metadata, classes)
        self._session = session
        self._input = inputs[0].name
        self._confidence = config.confidence
        self._iou = config.iou

    def prepare(self, frame: Frame) -> tuple[npt.NDArray[np.floating[Any]], Letterbox]:
        """The model's input for `frame` (letterboxed, RGB, 0..1, NCHW) and the letterbox used."""
        height, width = frame.shape[:2]
        lb = plan(width, height, self._width, self._height)
        scaled = cv2.resize(frame, (lb.scaled_width, lb.scaled_height), interpolation=cv2.INTER_LINEAR)
        padded = cv2.copyMakeBorder(
            scaled, lb.top, lb.bottom, lb.left, lb.right, cv2.BORDER_CONSTANT, value=(_PAD, _PAD, _PAD)
        )
        tensor = cv2.dnn.blobFromImage(padded, scalefactor=1.0 / 255.0, swapRB=True)
        return tensor.astype(np.float16 if self._half else np.float32, copy=False), lb

    def detect(self, frame: Frame) -> list[Detection]:
        tensor, lb = self.prepare(frame)
        output = self._session.run(None, {self._input: tensor})[0]
        return decode(
            np.asarray(output, dtype=np.float32), lb, self.names, confidence=self._confidence, iou=self._iou
        )


class NoDetector:
    """No object detector: a camera that watches for fire and smoke only."""

    name = "none"

    def detect(self, frame: Frame) -> list[Detection]:
        return []


class BothDetectors:
    """An object detector and the fire and smoke detector on the same frame."""

    def __init__(self, objects: Detector, fire: Detector) -> None:
        self.name = fire.name if isinstance(objects, NoDetector) else f"{objects.name}+{fire.name}"
        self._objects = objects
        self._fire = fire

    def detect(self, frame: Frame) -> list[Detection]:
        return self._objects.detect(frame) + self._fire.detect(frame)


def build_detector(config: DetectorConfig, fire: FireConfig | None = None) -> Detector:
    objects: Detector
    if config.kind == "onnx":
        objects = OnnxDetector(config)
    elif config.kind == "none":
        objects = NoDetector()
    else:
        objects = HogDetector(config)
    return objects if fire is None else BothDetectors(objects, FireSmokeDetector(fire))
