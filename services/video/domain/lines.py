"""Directional line crossing: a tracked object's foot point passing over a line drawn on the picture.

A line runs from A to B (fractions of the frame). Its sides are named as seen walking from A to B
on the picture: `right` is the right hand (with y pointing down, a line drawn left to right has
its right side below it). A crossing is the foot point moving, between two frames it was seen in,
from one side to the other through the segment itself; it fires once per crossing, when its
direction is the one watched (`left_to_right`, `right_to_left`, or `any`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from services.video.domain.geometry import Point
from services.video.domain.rules import Firing, RuleKind
from services.video.domain.tracker import Track

_FORGET_AFTER = 100  # frames


class Direction(enum.StrEnum):
    ANY = "any"
    LEFT_TO_RIGHT = "left_to_right"
    RIGHT_TO_LEFT = "right_to_left"


@dataclass(frozen=True, slots=True)
class CameraLine:
    id: str
    a: Point
    b: Point
    direction: Direction
    labels: frozenset[str]


def side(a: Point, b: Point, p: Point) -> float:
    """> 0 on the right of A->B (image coordinates, y down), < 0 on the left, 0 on the line."""
    return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])


def crossing(a: Point, b: Point, before: Point, after: Point) -> Direction | None:
    """The direction in which the move `before` -> `after` crosses the segment A-B, or None."""
    s_before, s_after = side(a, b, before), side(a, b, after)
    if s_before == 0 or s_after == 0 or (s_before > 0) == (s_after > 0):
        return None  # touching the line is not crossing it: the next frame decides
    # The move crosses the infinite line; it crosses the segment if A and B lie on either side of it.
    s_a, s_b = side(before, after, a), side(before, after, b)
    if s_a != 0 and s_b != 0 and (s_a > 0) == (s_b > 0):
        return None
    return Direction.LEFT_TO_RIGHT if s_before < 0 else Direction.RIGHT_TO_LEFT


class LineRules:
    def __init__(self, lines: Sequence[CameraLine]) -> None:
        self._lines = tuple(lines)
        # Per track: its last foot point and the frame it was seen in.
        self._last: dict[int, tuple[Point, int]] = {}
        self._frame = 0

    def evaluate(self, tracks: Sequence[Track], width: float, height: float, now: float) -> list[Firing]:
        self._frame += 1
        firings: list[Firing] = []
        for track in tracks:
            x, y = track.box.bottom_centre()
            foot = (x / width, y / height)
            last = self._last.get(track.id)
            self._last[track.id] = (foot, self._frame)
            if last is None:
                continue
            before = last[0]
            for line in self._lines:
                if track.label not in line.labels:
                    continue
                went = crossing(line.a, line.b, before, foot)
                if went is not None and line.direction in (Direction.ANY, went):
                    firings.append(
                        Firing(
                            RuleKind.LINE_CROSSING,
                            line.id,
                            track.id,
                            track.label,
                            track.box,
                            track.confidence,
                            now,
                            0.0,
                            direction=went.value,
                        )
                    )
        # A track missed for a few frames keeps its last foot point (its crossing is seen when it
        # is found again); one gone longer than a tracker keeps any is forgotten.
        self._last = {tid: v for tid, v in self._last.items() if self._frame - v[1] <= _FORGET_AFTER}
        return firings
