"""Camera health from the picture: covered, blinded, frozen, held before it is reported."""

from __future__ import annotations

import numpy as np

from services.video.domain.health import Condition, HealthMonitor, judge

RNG = np.random.default_rng(3)


def live(mean: int = 100) -> np.ndarray:
    """A live static scene: texture plus the sensor noise that makes each picture differ."""
    base = np.clip(np.indices((36, 64)).sum(axis=0) * 3 + mean - 60, 0, 255)
    return np.clip(base + RNG.normal(0, 2, base.shape), 0, 255).astype(np.uint8)


def flat(level: int) -> np.ndarray:
    return np.clip(RNG.normal(level, 1.5, (36, 64)), 0, 255).astype(np.uint8)


def test_each_picture_is_judged() -> None:
    assert judge(live(), None) is Condition.OK
    assert judge(flat(8), None) is Condition.COVERED
    assert judge(flat(250), None) is Condition.BLINDED
    assert judge(flat(120), None) is Condition.OK  # a grey wall in daylight: flat, not covered
    frame = live()
    assert judge(frame, frame.copy()) is Condition.FROZEN
    assert judge(live(), frame) is Condition.OK


def test_a_condition_is_reported_once_it_has_lasted_and_again_when_it_ends() -> None:
    monitor = HealthMonitor(hold_s=2.0)
    reports = []
    pictures = [live() for _ in range(4)] + [flat(5) for _ in range(8)] + [live() for _ in range(8)]
    for i, picture in enumerate(pictures):
        change = monitor.observe(picture, i * 0.5)
        if change is not None:
            reports.append((change, i * 0.5))
    # Covered from 2.0 s, reported at 4.0 s; live again from 6.0 s, reported at 8.0 s.
    assert reports == [(Condition.COVERED, 4.0), (Condition.OK, 8.0)]


def test_a_brief_darkness_is_not_reported() -> None:
    monitor = HealthMonitor(hold_s=2.0)
    pictures = [live(), flat(5), flat(5), live(), live(), flat(5), live()]
    assert [monitor.observe(p, i * 0.5) for i, p in enumerate(pictures)] == [None] * len(pictures)


def test_a_frozen_stream_is_reported() -> None:
    monitor = HealthMonitor(hold_s=1.0)
    stuck = live()
    changes = [monitor.observe(stuck.copy(), i * 0.5) for i in range(5)]
    assert Condition.FROZEN in changes
