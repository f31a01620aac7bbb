"""Frame sampling at the analysis rate, and the achieved rate under overload."""

from __future__ import annotations

import pytest

from services.video.domain.pacing import FrameSampler, RateMeter


def test_a_25_fps_camera_is_analysed_at_2_fps() -> None:
    sampler = FrameSampler(2.0)
    frames = [i / 25 for i in range(250)]  # 10 s of video
    analysed = [t for t in frames if sampler.due(t)]
    assert len(analysed) == 20
    assert analysed[:3] == pytest.approx([0.0, 0.52, 1.0])


def test_a_frame_that_cannot_be_decoded_leaves_its_turn_to_the_next() -> None:
    # The worker asks first (nothing taken), decodes, and takes the turn only with a picture.
    sampler = FrameSampler(2.0)
    assert sampler.pending(0.0) and sampler.due(0.0)
    assert not sampler.pending(0.2)
    assert sampler.pending(0.52)  # due, but this one is corrupt: the turn is not taken
    assert sampler.pending(0.56) and sampler.due(0.56)
    assert not sampler.pending(0.6)


def test_an_overloaded_worker_drops_frames_instead_of_catching_up() -> None:
    sampler = FrameSampler(4.0)
    meter = RateMeter(window=10.0)
    now = 0.0
    analysed = 0
    while now < 10.0:
        if sampler.due(now):
            analysed += 1
            meter.add(now)
            now += 0.5  # each analysis takes 0.5 s: only 2 of the 4 per second are possible
        else:
            now += 0.04
    # No burst of late frames after each slow one: one analysis per 0.5 s, and the rate says so.
    assert analysed == 20
    assert meter.rate(now) == pytest.approx(2.0, rel=0.05)


def test_rate_needs_two_events() -> None:
    meter = RateMeter()
    assert meter.rate(0.0) == 0.0
    meter.add(0.0)
    assert meter.rate(0.5) == 0.0


def test_sampler_refuses_a_zero_rate() -> None:
    with pytest.raises(ValueError, match="positive"):
        FrameSampler(0)
