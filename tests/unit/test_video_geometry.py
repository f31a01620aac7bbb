"""Zone geometry and the letterbox of the video service."""

from __future__ import annotations

import pytest

from services.video.domain.geometry import Box, contains, foot_in
from services.video.domain.letterbox import plan

SQUARE = ((0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0))
# A concave zone (an L): the notch at the top right is outside.
ELL = ((0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0))


@pytest.mark.parametrize(
    ("point", "inside"),
    [
        ((0.5, 0.75), True),
        ((0.5, 0.25), False),
        ((0.0, 0.5), True),
        ((1.0, 1.0), True),
        ((1.01, 0.75), False),
    ],
)
def test_a_point_is_in_a_zone_when_inside_or_on_its_edge(point: tuple[float, float], inside: bool) -> None:
    assert contains(SQUARE, point) is inside


def test_a_concave_zone_leaves_its_notch_out() -> None:
    assert contains(ELL, (0.25, 0.25))
    assert not contains(ELL, (0.75, 0.25))
    assert contains(ELL, (0.75, 0.75))


def test_an_object_is_in_a_zone_by_where_it_stands_not_by_its_head() -> None:
    # 100 x 100 frame, the zone is the lower half: the box reaches into it only with its feet.
    standing_outside = Box(40, 10, 60, 49)
    stepped_in = Box(40, 20, 60, 60)
    leaning_in_from_the_side = Box(0, 40, 200, 45)  # wide, but its feet are above the line
    assert not foot_in(SQUARE, standing_outside, 100, 100)
    assert foot_in(SQUARE, stepped_in, 100, 100)
    assert not foot_in(SQUARE, leaning_in_from_the_side, 100, 100)


def test_overlap_of_boxes() -> None:
    a = Box(0, 0, 10, 10)
    assert a.iou(a) == 1.0
    assert a.iou(Box(5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert a.iou(Box(20, 20, 30, 30)) == 0.0


def test_normalised_box_is_clipped_to_the_frame() -> None:
    assert Box(-10, 50, 110, 150).normalised(100, 200) == (0.0, 0.25, 1.0, 0.5)


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (720, 1280), (333, 101), (640, 640), (50, 400)])
@pytest.mark.parametrize(("in_w", "in_h"), [(640, 640), (320, 256)])
def test_letterbox_round_trip_on_any_frame_shape(width: int, height: int, in_w: int, in_h: int) -> None:
    lb = plan(width, height, in_w, in_h)
    # The picture keeps its aspect ratio (within a pixel of rounding) and the padding is even.
    assert lb.scaled_width == in_w or lb.scaled_height == in_h
    assert abs(lb.scaled_width / lb.scaled_height - width / height) < 2 / min(
        lb.scaled_width, lb.scaled_height
    )
    assert abs(lb.left - lb.right) <= 1 and abs(lb.top - lb.bottom) <= 1
    box = Box(width * 0.1, height * 0.2, width * 0.7, height * 0.9)
    back = lb.to_frame(lb.to_input(box))
    for got, want in zip((back.x1, back.y1, back.x2, back.y2), (box.x1, box.y1, box.x2, box.y2), strict=True):
        assert got == pytest.approx(want, abs=1e-6)


def test_letterbox_of_a_wide_frame_pads_top_and_bottom() -> None:
    lb = plan(1280, 720, 640, 640)
    assert (lb.scaled_width, lb.scaled_height, lb.left, lb.top) == (640, 360, 0, 140)
    # The centre of the input is the centre of the frame; the input's top edge is outside it.
    centre = lb.to_frame(lb.to_input(Box(630, 350, 650, 370)))
    assert (centre.x1, centre.y1) == pytest.approx((630, 350))
    assert lb.to_frame(Box(0, 0, 640, 140)).height == 0.0


def test_letterbox_refuses_an_empty_frame() -> None:
    with pytest.raises(ValueError, match="positive"):
        plan(0, 720, 640, 640)
