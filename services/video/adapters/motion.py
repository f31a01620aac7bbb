"""Motion gating: MOG2 background subtraction decides whether a frame is worth a detection.

It runs on a small grey copy of the frame (160 pixels wide), so a static scene costs a resize and
a subtraction, not an inference. Masked areas (trees, a road, a clock) never count as motion.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from services.video.adapters.source import Frame
from services.video.config import MotionConfig

_WIDTH = 160


class MotionGate:
    def __init__(self, config: MotionConfig) -> None:
        self._config = config
        self._subtractor = cv2.createBackgroundSubtractorMOG2(
            history=config.history, varThreshold=config.var_threshold, detectShadows=False
        )
        self._mask: Frame | None = None
        self._watched = 0

    def moving(self, frame: Frame) -> bool:
        """Whether enough of the watched picture changed (the first frames always have)."""
        height, width = frame.shape[:2]
        small_height = max(1, round(height * _WIDTH / width))
        small = cv2.cvtColor(
            cv2.resize(frame, (_WIDTH, small_height), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY
        )
        if self._mask is None or self._mask.shape != small.shape:
            self._mask = _watched_area(self._config.masks, _WIDTH, small_height)
            self._watched = max(1, int(cv2.countNonZero(self._mask)))
        foreground = self._subtractor.apply(small)
        changed = cv2.countNonZero(cv2.bitwise_and(foreground, self._mask))
        return changed / self._watched >= self._config.min_area


def _watched_area(masks: Sequence[Sequence[tuple[float, float]]], width: int, height: int) -> Frame:
    area = np.full((height, width), 255, np.uint8)
    for polygon in masks:
        points = np.array([[round(x * (width - 1)), round(y * (height - 1))] for x, y in polygon], np.int32)
        cv2.fillPoly(area, [points], 0)
    return area
