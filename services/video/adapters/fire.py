"""Fire and smoke by colour and behaviour over time: a classical detector, no model to download.

Fire: pixels of flame colour (bright, red to yellow: YCrCb `Cr - Cb` large and HSV hue 0..70
degrees, saturated) form regions; a region is fire when its shape flickers (its pixels keep
switching between flame-coloured and not across the analysed frames of `window`) while it stays
where it is (flame-coloured in its box on every one of those frames). A static orange sign has no
flicker; an orange object passing by does not stay.

Smoke: greyish (low saturation, neither black nor white) pixels that differ, but only softly
(smoke is translucent), from a slowly adapting background; a region is smoke when it has been
there on most of the window's frames and has grown or drifted (the box around what it
covered over the window is `min_growth` times the box around what it covered at its start)
slowly (its current area is at least half of what it covered). A grey object put down is
absorbed into the background all over at once, never growing; one walking past is not there
long enough.

Stateful per camera connection and used only from its worker thread, like every detector. What
it cannot tell apart is said in the README: sodium lamps, sunsets and flashing orange lights
look like fire to colour and flicker; steam, fog and dust like smoke.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from services.video.adapters.source import Frame
from services.video.config import FireConfig
from services.video.domain.detection import Detection
from services.video.domain.geometry import Box

Mask = npt.NDArray[np.bool_]

# Flame colour: chroma red well above blue (Celik and Demirel's YCrCb rule), a hue from red to
# yellow, saturated and bright (Chen et al.'s RGB/HSV rule, in OpenCV's 0..180 hue).
_CR_MINUS_CB = 40
_FIRE_HUE_MAX = 35
_FIRE_SAT_MIN = 80
_FIRE_VALUE_MIN = 150
# Smoke colour: little saturation, neither black nor blown out.
_SMOKE_SAT_MAX = 60
_SMOKE_VALUE_MIN = 60
_SMOKE_VALUE_MAX = 235
# How far a smoke pixel is from the background (grey levels): more than noise, less than a solid
# object in front of it would be.
_SMOKE_DIFF_MIN = 10.0
_SMOKE_DIFF_MAX = 90.0
# The background's adaptation per analysed frame: about 25 frames to follow a change half way.
_BACKGROUND_RATE = 0.03
# A smoke region is there on at least this share of the window's frames.
_SMOKE_PRESENT = 0.75
# ... and its current area is at least this share of what it covered over the window (slow).
_SMOKE_SLOW = 0.5

_OPEN = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
_JOIN = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))


def fire_colour(frame: Frame) -> Mask:
    """Pixels of flame colour."""
    ycrcb = cv2.cvtColor(frame, cv2.COLOR_BGR2YCrCb)
    hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
    cr = ycrcb[:, :, 1].astype(np.int16)
    cb = ycrcb[:, :, 2].astype(np.int16)
    hue, sat, value = hsv[:, :, 0], hsv[:, :, 1], hsv[:, :, 2]
    mask = (
        (cr - cb >= _CR_MINUS_CB)
        & (hue <= _FIRE_HUE_MAX)
        & (sat >= _FIRE_SAT_MIN)
        & (value >= _FIRE_VALUE_MIN)
    )
    return _clean(mask)


def smoke_colour(frame: Frame, grey: npt.NDArray[np.float32], background: npt.NDArray[np.float32]) -> Mask:
    """Greyish pixels softly different from the background."""
    hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
    sat, value = hsv[:, :, 1], hsv[:, :, 2]
    diff = np.abs(grey - background)
    mask = (
        (sat <= _SMOKE_SAT_MAX)
        & (value >= _SMOKE_VALUE_MIN)
        & (value <= _SMOKE_VALUE_MAX)
        & (diff >= _SMOKE_DIFF_MIN)
        & (diff <= _SMOKE_DIFF_MAX)
    )
    return _clean(mask)


def _clean(mask: Mask) -> Mask:
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, _OPEN)
    return np.asarray(opened, dtype=bool)


def _regions(mask: Mask, min_pixels: int) -> list[tuple[int, int, int, int]]:
    """Boxes (x, y, w, h) of the mask's regions of at least `min_pixels`, near pieces joined."""
    joined = cv2.dilate(mask.astype(np.uint8), _JOIN)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    boxes = []
    for i in range(1, count):
        x, y, w, h, _area = (int(v) for v in stats[i])
        own = labels[y : y + h, x : x + w] == i
        if int(np.count_nonzero(mask[y : y + h, x : x + w] & own)) >= min_pixels:
            boxes.append((x, y, w, h))
    return boxes


def _extent(mask: Mask) -> int:
    """The area of the box around the mask's pixels."""
    _, _, w, h = cv2.boundingRect(mask.astype(np.uint8))
    return int(w * h)


class FireSmokeDetector:
    name = "fire"

    def __init__(self, config: FireConfig) -> None:
        self._config = config
        self._fire: deque[Mask] = deque(maxlen=config.window)
        self._smoke: deque[Mask] = deque(maxlen=config.window)
        self._background: npt.NDArray[np.float32] | None = None

    def detect(self, frame: Frame) -> list[Detection]:
        height, width = frame.shape[:2]
        if self._background is not None and self._background.shape != (height, width):
            # Another resolution (a camera reconfigured on its side): the history no longer fits.
            self._fire.clear()
            self._smoke.clear()
            self._background = None
        min_pixels = max(4, round(self._config.min_area * width * height))
        found = self._fires(fire_colour(frame), min_pixels)
        if self._config.smoke:
            found += self._smokes(frame, min_pixels)
        return sorted(found, key=lambda d: -d.confidence)

    def _fires(self, mask: Mask, min_pixels: int) -> list[Detection]:
        self._fire.append(mask)
        if len(self._fire) < self._config.window:
            return []
        history = np.stack(self._fire)
        switches = np.count_nonzero(history[1:] != history[:-1], axis=0)
        ever: Mask = np.asarray(history.any(axis=0), dtype=bool)
        found = []
        for x, y, w, h in _regions(mask, min_pixels):
            window = (slice(None), slice(y, y + h), slice(x, x + w))
            # A fire stays: flame colour in its box on every frame of the window.
            if not history[window].any(axis=(1, 2)).all():
                continue
            region = ever[y : y + h, x : x + w]
            flicker = float(switches[y : y + h, x : x + w][region].mean()) / (len(history) - 1)
            if flicker < self._config.min_flicker:
                continue
            confidence = min(1.0, 0.5 + 0.5 * (flicker - self._config.min_flicker) / self._config.min_flicker)
            found.append(Detection(Box(x, y, x + w, y + h), confidence, "fire"))
        return found

    def _smokes(self, frame: Frame, min_pixels: int) -> list[Detection]:
        grey: npt.NDArray[np.float32] = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32)
        if self._background is None:
            self._background = grey.copy()
        mask = smoke_colour(frame, grey, self._background)
        cv2.accumulateWeighted(grey, self._background, _BACKGROUND_RATE)
        self._smoke.append(mask)
        if len(self._smoke) < self._config.window:
            return []
        history = np.stack(self._smoke)
        found = []
        for x, y, w, h in _regions(mask, min_pixels):
            box: Any = history[:, y : y + h, x : x + w]
            areas = np.count_nonzero(box, axis=(1, 2))
            # There: as big as a region must be (not a few pixels crossing a threshold).
            present = areas >= min_pixels
            if present.mean() < _SMOKE_PRESENT:
                continue
            # Growth as the extent of what it covers, not its pixel count: a solid object fading
            # into the background shows up pixel by pixel all over its final extent at once.
            start = _extent(box[int(np.argmax(present))])
            union = box.any(axis=0)
            growth = _extent(union) / max(1, start)
            if growth < self._config.min_growth or areas[-1] < _SMOKE_SLOW * np.count_nonzero(union):
                continue
            confidence = min(1.0, 0.5 + 0.5 * (growth - self._config.min_growth) / self._config.min_growth)
            found.append(Detection(Box(x, y, x + w, y + h), confidence, "smoke"))
        return found
