"""Decoding the output of a YOLOv8-format model: `(1, 4 + classes, N)`, no objectness.

Each of the N candidates is a centre, a size (in model input pixels) and one score per class; a
candidate's class is its best score. Candidates under the confidence threshold are dropped, the
rest go through non-maximum suppression class by class (a person standing in front of a forklift
must not suppress it), and their boxes are taken back through the letterbox to frame pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from services.video.domain.detection import Detection
from services.video.domain.geometry import Box
from services.video.domain.letterbox import Letterbox


class OutputShapeError(ValueError):
    """The model's output is not `(1, 4 + classes, N)` for the classes it names."""


def check_shape(shape: Sequence[int | str | None], classes: int) -> None:
    """Refuse an output shape that cannot be YOLOv8's for `classes` classes (N may be dynamic)."""
    if len(shape) != 3 or shape[1] != 4 + classes or (isinstance(shape[0], int) and shape[0] != 1):
        raise OutputShapeError(
            f"output shape {list(shape)} is not (1, {4 + classes}, N) for {classes} classes"
        )


def decode(
    output: npt.NDArray[np.float32],
    letterbox: Letterbox,
    names: Sequence[str],
    *,
    confidence: float,
    iou: float,
    max_detections: int = 300,
) -> list[Detection]:
    """The detections in `output`, best first, boxes in frame pixels."""
    check_shape(output.shape, len(names))
    candidates = output[0].T  # (N, 4 + classes)
    scores = candidates[:, 4:]
    classes = scores.argmax(axis=1)
    best = scores[np.arange(len(candidates)), classes]
    keep = best >= confidence
    if not keep.any():
        return []
    centres, kept_scores, kept_classes = candidates[keep, :4], best[keep], classes[keep]
    # x, y, width, height in input pixels: the form OpenCV's batched NMS takes.
    rects = np.column_stack(
        (centres[:, 0] - centres[:, 2] / 2, centres[:, 1] - centres[:, 3] / 2, centres[:, 2:4])
    )
    chosen = cv2.dnn.NMSBoxesBatched(
        rects.tolist(), kept_scores.tolist(), kept_classes.tolist(), confidence, iou
    )
    order = sorted((int(i) for i in np.asarray(chosen).reshape(-1)), key=lambda i: -float(kept_scores[i]))
    found: list[Detection] = []
    for i in order[:max_detections]:
        x, y, w, h = (float(v) for v in rects[i])
        box = letterbox.to_frame(Box(x, y, x + w, y + h))
        found.append(Detection(box, float(kept_scores[i]), names[int(kept_classes[i])]))
    return found


def class_names(metadata: dict[str, str], classes: int, *, strict: bool = False) -> list[str]:
    """Class names from a model's metadata (`names`, as Ultralytics exports write it:
    `{0: 'person', 1: 'car'}`), else `class0`, `class1`, ... With `strict`, only the names the
    metadata gives (none when it has none)."""
    raw = metadata.get("names")
    names: dict[int, str] = {}
    if raw:
        for part in raw.strip().strip("{}").split(","):
            key, sep, value = part.partition(":")
            if sep and key.strip().isdigit():
                names[int(key.strip())] = value.strip().strip("'\"")
    if strict:
        return [names[i] for i in sorted(names)]
    return [names.get(i, f"class{i}") for i in range(classes)]
