"""A simulated camera's pictures: a plant yard where a flame flickers and grey smoke rises.

Drawn with OpenCV, frame by frame, from a seed. The tests of the fire and smoke detector use
`fire_and_smoke`; the demo's camera (camera_stream.py) draws `unit_view`: the FCC 2 structure at
dusk, where a gas release shows as gusts of grey vapour as thick and as far-reaching as the
release's level. Pure apart from `write_clip`; nothing here is read from disk.
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


# The demo camera's view. Vapour leaks at the wet gas compressor and drifts up and to the right
# in gusts: each grows for GUST_GROW frames (at the stream's 5 frames/s), thins out over
# GUST_FADE and is gone for the rest of GUST_FRAMES. A cloud that only ever stood there would
# blend into the detector's background; a gust grows, as vapour in the wind does, so the camera
# reports each one, and one every 20 s keeps its alarm up while the release runs.
STREAM_FPS = 5.0
GUST_FRAMES = 125
GUST_GROW = 75
GUST_FADE = 15
VAPOUR_SOURCE = (125, 196)  # the compressor's seal, in pixels
# The wind turns from gust to gust (pixels a frame sideways): each cloud drifts over yard the
# one before did not cover.
_WIND = (1.0, -0.7, 0.3)
VAPOUR_OPACITY = 0.65  # at level 1, where the cloud is thickest
# The level from which the vapour is thick enough to see: half way up, after the zone's gas
# detectors have alarmed (20 %LEL at 0.63 of the scripted release's 32 %LEL peak is close), so the
# camera's smoke joins the gas release's incident rather than opening one of its own.
VISIBLE_FROM = 0.5
_SKY_TOP = (120, 70, 40)  # BGR: a dusk sky, too blue to be taken for smoke
_SKY_HORIZON = (150, 115, 80)
_HORIZON = 118
_STEEL = (55, 62, 72)
_DARK_STEEL = (38, 42, 48)
_TANK = (60, 75, 95)
_PIPE = (40, 70, 110)
_LIGHT = (120, 235, 255)


def _draw_unit(label: str, width: int, height: int) -> Image:
    """The still part of the view: sky, yard, the FCC structure, a tank, a pipe rack, a caption."""
    frame = np.empty((height, width, 3), np.uint8)
    for y in range(_HORIZON):
        t = y / _HORIZON
        frame[y, :] = [round(a + (b - a) * t) for a, b in zip(_SKY_TOP, _SKY_HORIZON, strict=True)]
    frame[_HORIZON:, :] = _YARD
    # The reactor-regenerator structure: a steel frame with floors, a column beside it.
    cv2.rectangle(frame, (190, 40), (262, _HORIZON + 40), _STEEL, -1)
    for y in range(52, _HORIZON + 40, 18):
        cv2.line(frame, (190, y), (262, y), _DARK_STEEL, 2)
    for x in (190, 214, 238, 262):
        cv2.line(frame, (x, 40), (x, _HORIZON + 40), _DARK_STEEL, 2)
    cv2.rectangle(frame, (272, 14), (290, _HORIZON + 40), _STEEL, -1)
    cv2.ellipse(frame, (281, 14), (9, 5), 0, 180, 360, _STEEL, -1)
    # A storage tank on the left and the pipe rack across the yard.
    cv2.rectangle(frame, (16, 92), (92, 150), _TANK, -1)
    cv2.ellipse(frame, (54, 92), (38, 8), 0, 180, 360, _TANK, -1)
    for y in (160, 166):
        cv2.line(frame, (0, y), (width, y), _PIPE, 2)
    # The wet gas compressor the vapour leaks from, and the structure's aircraft warning lights.
    cv2.rectangle(frame, (100, 182), (150, 204), _DARK_STEEL, -1)
    for x, y in ((276, 20), (286, 20)):
        cv2.circle(frame, (x, y), 2, _LIGHT, -1)
    if label:
        cv2.putText(frame, label, (6, 14), cv2.FONT_HERSHEY_PLAIN, 0.9, (235, 235, 235), 1, cv2.LINE_8)
    return frame


_UNITS: dict[tuple[str, int, int], Image] = {}


def unit(label: str = "", width: int = WIDTH, height: int = HEIGHT) -> Image:
    """The still part of the demo camera's view (drawn once, then a copy each time)."""
    key = (label, width, height)
    if key not in _UNITS:
        _UNITS[key] = _draw_unit(label, width, height)
    return _UNITS[key].copy()


def vapour(frame: Image, level: float, index: int) -> None:
    """The gust of grey vapour at frame `index` of the stream, for a release at `level` (0 to 1):
    none below VISIBLE_FROM; thicker, rising faster and spreading wider as the level rises."""
    if level < VISIBLE_FROM:
        return
    age = index % GUST_FRAMES
    if age >= GUST_GROW + GUST_FADE:
        return
    gust = index // GUST_FRAMES
    thinning = 1.0 if age < GUST_GROW else 1.0 - (age - GUST_GROW) / GUST_FADE
    scale = 0.5 + 0.5 * min(level, 1.0)
    wind = _WIND[gust % len(_WIND)]
    height, width = frame.shape[:2]
    layer = np.zeros((height, width), np.float32)
    sx, sy = VAPOUR_SOURCE
    # One puff a frame while the gust blows, each rising, drifting and widening as it ages.
    for k in range(min(age, GUST_GROW) + 1):
        puff_age = age - k
        sway = 4 * math.sin(0.6 * (k + 7 * gust))
        centre = (round(sx + scale * wind * puff_age + sway), round(sy - scale * 1.7 * puff_age))
        cv2.circle(layer, centre, round(5 + scale * 0.6 * puff_age), 1.0, -1)
    opacity = VAPOUR_OPACITY * min(level, 1.0) * thinning
    alpha = opacity * np.clip(cv2.GaussianBlur(layer, (0, 0), 3), 0, 1)[:, :, None]
    blended = frame.astype(np.float32) * (1 - alpha) + np.array(GREY, np.float32) * alpha
    frame[:] = blended.astype(np.uint8)


def unit_view(level: float, index: int, rng: np.random.Generator, *, label: str = "") -> Image:
    """Frame `index` of the demo camera: the unit with sensor noise, and the vapour of a release
    at `level` (0: a quiet yard). The gusts count from `index` 0."""
    frame = unit(label)
    noise = rng.integers(-8, 9, (frame.shape[0], frame.shape[1], 1), dtype=np.int16)
    frame[:] = np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    vapour(frame, level, index)
    return frame


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
