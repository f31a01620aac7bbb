"""Boxes and polygons in a camera's picture: overlap, a box's foot point, and zone membership.

Boxes are in pixels of the analysed frame, corners (x1, y1) top-left and (x2, y2) bottom-right.
Zones and masks are written in fractions of the frame (0..1, origin top-left), so they stay right
when a camera's resolution changes; a box is brought to the same scale before testing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Point = tuple[float, float]
Polygon = tuple[Point, ...]


@dataclass(frozen=True, slots=True)
class Box:
    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return max(0.0, self.x2 - self.x1)

    @property
    def height(self) -> float:
        return max(0.0, self.y2 - self.y1)

    @property
    def area(self) -> float:
        return self.width * self.height

    def bottom_centre(self) -> Point:
        # Where the object stands on the ground: the point zones are tested at, so a person whose
        # head leans over a fence line is not yet inside.
        return ((self.x1 + self.x2) / 2.0, self.y2)

    def iou(self, other: Box) -> float:
        inter = Box(
            max(self.x1, other.x1), max(self.y1, other.y1), min(self.x2, other.x2), min(self.y2, other.y2)
        )
        shared = inter.area
        union = self.area + other.area - shared
        return shared / union if union > 0 else 0.0

    def clipped(self, width: float, height: float) -> Box:
        return Box(
            min(max(self.x1, 0.0), width),
            min(max(self.y1, 0.0), height),
            min(max(self.x2, 0.0), width),
            min(max(self.y2, 0.0), height),
        )

    def normalised(self, width: float, height: float) -> tuple[float, float, float, float]:
        """(x, y, width, height) as fractions of a frame of `width` x `height`, inside 0..1."""
        box = self.clipped(width, height)
        return (box.x1 / width, box.y1 / height, box.width / width, box.height / height)


def contains(polygon: Sequence[Point], point: Point) -> bool:
    """Whether `point` lies inside `polygon` (even-odd rule; a point on an edge counts as inside)."""
    x, y = point
    inside = False
    count = len(polygon)
    for i in range(count):
        ax, ay = polygon[i]
        bx, by = polygon[(i + 1) % count]
        if _on_segment((ax, ay), (bx, by), (x, y)):
            return True
        if (ay > y) != (by > y):
            crossing = ax + (y - ay) * (bx - ax) / (by - ay)
            if x < crossing:
                inside = not inside
    return inside


def _on_segment(a: Point, b: Point, p: Point) -> bool:
    (ax, ay), (bx, by), (x, y) = a, b, p
    cross = (bx - ax) * (y - ay) - (by - ay) * (x - ax)
    if abs(cross) > 1e-12:
        return False
    return min(ax, bx) - 1e-12 <= x <= max(ax, bx) + 1e-12 and min(ay, by) - 1e-12 <= y <= max(ay, by) + 1e-12


def foot_in(polygon: Sequence[Point], box: Box, frame_width: float, frame_height: float) -> bool:
    """Whether the bottom centre of `box` (pixels) lies in `polygon` (fractions of the frame)."""
    x, y = box.bottom_centre()
    return contains(polygon, (x / frame_width, y / frame_height))
