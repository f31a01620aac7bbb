"""Which frames a camera's worker analyses, and the rate it achieved.

A camera delivers frames at its own rate; the worker analyses at most `fps` of them per second and
lets the others go. When analysis takes longer than the interval, the next due time moves on from
now rather than piling up, so an overloaded worker drops frames (never the detections of the frames
it analysed) and the achieved rate shows by how much it falls short.
"""

from __future__ import annotations

from collections import deque


class FrameSampler:
    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self._interval = 1.0 / fps
        self._next: float | None = None

    def pending(self, now: float) -> bool:
        """Whether a frame at `now` would be analysed, without taking its turn: the worker decodes
        a frame only then, and a frame that cannot be decoded leaves the turn to the next one."""
        return self._next is None or now >= self._next

    def due(self, now: float) -> bool:
        """Whether the frame at `now` is to be analysed (and if so, the next one is `1/fps` later)."""
        if self._next is not None and now < self._next:
            return False
        # Late by more than one interval: start again from now, do not try to catch up.
        if self._next is None or now - self._next >= self._interval:
            self._next = now + self._interval
        else:
            self._next += self._interval
        return True


class RateMeter:
    """Events per second over the last `window` seconds."""

    def __init__(self, window: float = 10.0) -> None:
        self._window = window
        self._times: deque[float] = deque()

    def add(self, now: float) -> None:
        self._times.append(now)
        self._trim(now)

    def rate(self, now: float) -> float:
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        # Intervals between the events kept, over the time they span.
        return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self._window:
            self._times.popleft()
