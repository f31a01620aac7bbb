"""A simulated camera's pictures: a plant yard where a flame flickers and grey smoke rises.

Drawn with OpenCV, frame by frame, from a seed: the demo writes them as a looping clip into its
data dir for its camera, and the tests of the fire and smoke detector use the same pictures.
Pure apart from `write_clip`; nothing here is read from disk.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]

WIDTH, HEIGHT = 320, 240
ORANGE = (0, 140, 255)  # BGR
GREY = (170, 170, 170)
_FLAME_TONGUE = (0, 90, 240)
_FLAME_CORE = (60, 220, 255)
_YARD = (40, 70, 50)


def yard(rng: np.random.Generator, width: int = WIDTH, height: int = HEIGHT) -> Image:
    """A dim, textured yard with sensor noise: dark green-brown, neither flame-coloured nor grey."""
    base = np.empty((height, width, 3), np.int16)
    base[:, :] = _YARD
    texture = rng.integers(-10, 10, (height, width, 1), dtype=np.int16)
    out: Image = np.clip(base + texture, 0, 255).astype(np.uint8)
    return out


def flame(rng: np.random.Generator, frame: Image, cx: int, base_y: int) -> None:
    """A flame standing at (cx, base_y): an orange body of random size, tongues, a yellow core."""
    width = int(rng.integers(22, 38))
    height = int(rng.integers(35, 75))
    cv2.ellipse(frame, (cx, base_y - height // 2), (width // 2, height // 2), 0, 0, 360, ORANGE, -1)
    for _ in range(3):
        tx = cx + int(rng.integers(-width // 2, width // 2))
        tip = base_y - height - int(rng.integers(0, 25))
        root = base_y - height // 2
        cv2.fillPoly(frame, [np.array([[tx - 6, root], [tx + 6, root], [tx, tip]], np.int32)], _FLAME_TONGUE)
    cv2.ellipse(frame, (cx, base_y - height // 3), (width // 5, height // 5), 0, 0, 360, _FLAME_CORE, -1)


def plume(frame: Image, age: int, cx: int, base_y: int, *, rise: float = 5.0, spread: float = 2.0) -> None:
    """Grey smoke `age` frames after it started at (cx, base_y): one puff released a frame, each
    rising `rise` pixels and widening `spread` a frame, soft edged and translucent."""
    if age < 0:
        return
    height, width = frame.shape[:2]
    layer = np.zeros((height, width), np.float32)
    for k in range(age + 1):
        puff_age = age - k
        centre = (cx + int(4 * math.sin(k)), round(base_y - rise * puff_age))
        cv2.circle(layer, centre, round(8 + spread * puff_age), 1.0, -1)
    alpha = 0.55 * np.clip(cv2.GaussianBlur(layer, (0, 0), 3), 0, 1)[:, :, None]
    blended = frame.astype(np.float32) * (1 - alpha) + np.array(GREY, np.float32) * alpha
    frame[:] = blended.astype(np.uint8)


def fire_and_smoke(frames: int, *, seed: int = 7, smoke_from: int = 4) -> Iterator[Image]:
    """A yard with a flame on the right from the first frame and smoke rising on the left from
    `smoke_from` on, growing for the rest of the clip."""
    rng = np.random.default_rng(seed)
    for i in range(frames):
        frame = yard(rng)
        flame(rng, frame, 250, 210)
        plume(frame, i - smoke_from, 80, 210, rise=3.0, spread=1.2)
        yield frame


def write_clip(path: Path, images: Iterator[Image], fps: float) -> Path:
    """The frames as a clip (MJPEG in AVI, which every OpenCV build reads and writes)."""
    writer: cv2.VideoWriter | None = None
    for image in images:
        if writer is None:
            height, width = image.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*"MJPG")  # type: ignore[attr-defined]  # untyped in the stubs
            writer = cv2.VideoWriter(str(path), fourcc, fps, (width, height))
            if not writer.isOpened():
                raise OSError(f"cannot write a clip at {path}")
        writer.write(image)
    if writer is None:
        raise ValueError("a clip needs at least one frame")
    writer.release()
    return path
