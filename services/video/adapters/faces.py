"""The face-blurred copy of a snapshot: what may ever leave the tenant.

Faces are found with OpenCV's bundled Haar cascades (frontal and profile, nothing downloaded) and
each is pixelated over a margin around it, beyond what a cascade or a person can read back.
"""

from __future__ import annotations

import cv2
import numpy as np

from services.video.adapters.source import Frame

_CASCADES = (
    "haarcascade_frontalface_default.xml",
    "haarcascade_frontalface_alt.xml",
    "haarcascade_frontalface_alt2.xml",
    "haarcascade_profileface.xml",
)
_MARGIN = 0.25


class FaceBlur:
    def __init__(self) -> None:
        self._cascades = [cv2.CascadeClassifier(cv2.data.haarcascades + name) for name in _CASCADES]  # type: ignore[attr-defined]
        if any(cascade.empty() for cascade in self._cascades):
            raise RuntimeError("OpenCV's face cascades are missing from this installation")

    def faces(self, frame: Frame) -> list[tuple[int, int, int, int]]:
        grey = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        found: list[tuple[int, int, int, int]] = []
        for cascade in self._cascades:
            for x, y, w, h in cascade.detectMultiScale(
                grey, scaleFactor=1.1, minNeighbors=4, minSize=(12, 12)
            ):
                found.append((int(x), int(y), int(w), int(h)))
        return found

    def blurred(self, frame: Frame) -> tuple[Frame, int]:
        """A copy of `frame` with every face found pixelated, and how many were found."""
        faces = self.faces(frame)
        copy = frame.copy()
        height, width = frame.shape[:2]
        for x, y, w, h in faces:
            dx, dy = int(w * _MARGIN), int(h * _MARGIN)
            x1, y1 = max(0, x - dx), max(0, y - dy)
            x2, y2 = min(width, x + w + dx), min(height, y + h + dy)
            region = copy[y1:y2, x1:x2]
            # Down to 4 x 4 blocks, then back: no feature of the face survives.
            tiny = cv2.resize(region, (4, 4), interpolation=cv2.INTER_AREA)
            copy[y1:y2, x1:x2] = cv2.resize(tiny, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)
        return np.ascontiguousarray(copy), len(faces)
