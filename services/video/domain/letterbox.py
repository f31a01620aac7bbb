"""The letterbox that fits a frame into a model's input, and the way back for the boxes it finds.

A frame is scaled to fit inside the input without changing its aspect ratio and the rest is padded
evenly on both sides. The scale is taken from both width and height (the smaller ratio wins), and
the way back uses the per-axis scale actually applied after rounding to whole pixels, so a box
mapped in and out lands where it started on any frame shape.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.video.domain.geometry import Box


@dataclass(frozen=True, slots=True)
class Letterbox:
    frame_width: int
    frame_height: int
    input_width: int
    input_height: int
    scaled_width: int
    scaled_height: int
    left: int
    top: int

    @property
    def right(self) -> int:
        return self.input_width - self.scaled_width - self.left

    @property
    def bottom(self) -> int:
        return self.input_height - self.scaled_height - self.top

    @property
    def gain_x(self) -> float:
        return self.scaled_width / self.frame_width

    @property
    def gain_y(self) -> float:
        return self.scaled_height / self.frame_height

    def to_input(self, box: Box) -> Box:
        """A box in frame pixels as it appears in the model's input."""
        return Box(
            box.x1 * self.gain_x + self.left,
            box.y1 * self.gain_y + self.top,
            box.x2 * self.gain_x + self.left,
            box.y2 * self.gain_y + self.top,
        )

    def to_frame(self, box: Box) -> Box:
        """A box the model found, in pixels of the original frame (clipped to it)."""
        return Box(
            (box.x1 - self.left) / self.gain_x,
            (box.y1 - self.top) / self.gain_y,
            (box.x2 - self.left) / self.gain_x,
            (box.y2 - self.top) / self.gain_y,
        ).clipped(self.frame_width, self.frame_height)


def plan(frame_width: int, frame_height: int, input_width: int, input_height: int) -> Letterbox:
    """How a `frame_width` x `frame_height` frame fits into the model's input."""
    if min(frame_width, frame_height, input_width, input_height) <= 0:
        raise ValueError("frame and input sizes must be positive")
    gain = min(input_width / frame_width, input_height / frame_height)
    scaled_width = max(1, min(input_width, round(frame_width * gain)))
    scaled_height = max(1, min(input_height, round(frame_height * gain)))
    return Letterbox(
        frame_width,
        frame_height,
        input_width,
        input_height,
        scaled_width,
        scaled_height,
        (input_width - scaled_width) // 2,
        (input_height - scaled_height) // 2,
    )
