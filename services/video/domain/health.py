"""Camera health from the picture itself: frozen, covered or blinded, held for a while.

A lens covered (a bag, paint, a hand) gives a dark, flat picture; one blinded (a floodlight, the
sun) a bright, flat one; a frozen encoder sends the very same picture again and again, without
the sensor noise of a live static scene. Each is judged on a small grey copy of an analysed
frame and reported only once it has lasted `hold_s`, and `ok` once it has gone: a change of
condition, not a stream of them. Pure: time is a parameter.
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt


class Condition(enum.StrEnum):
    OK = "ok"
    OFFLINE = "offline"  # reported by the worker: the camera cannot be opened or dropped out
    FROZEN = "frozen"
    COVERED = "covered"
    BLINDED = "blinded"


# Grey levels 0..255 of the small copy.
DARK = 25.0
BRIGHT = 235.0
FLAT = 6.0  # standard deviation under which a picture shows nothing


def judge(grey: npt.NDArray[np.uint8], previous: npt.NDArray[np.uint8] | None) -> Condition:
    """The condition one picture shows, given the picture analysed before it."""
    mean, spread = float(grey.mean()), float(grey.std())
    if spread < FLAT and mean < DARK:
        return Condition.COVERED
    if spread < FLAT and mean > BRIGHT:
        return Condition.BLINDED
    if previous is not None and previous.shape == grey.shape and np.array_equal(previous, grey):
        return Condition.FROZEN
    return Condition.OK


class HealthMonitor:
    def __init__(self, hold_s: float) -> None:
        self._hold_s = hold_s
        self._previous: npt.NDArray[np.uint8] | None = None
        self._seen: Condition = Condition.OK
        self._since = 0.0
        self.reported: Condition = Condition.OK

    def observe(self, grey: npt.NDArray[np.uint8], now: float) -> Condition | None:
        """The new condition to report after this picture, or None when nothing changed."""
        condition = judge(grey, self._previous)
        self._previous = grey
        if condition is not self._seen:
            self._seen, self._since = condition, now
        if condition is not self.reported and now - self._since >= self._hold_s:
            self.reported = condition
            return condition
        return None
