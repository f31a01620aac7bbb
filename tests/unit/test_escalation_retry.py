"""What an attempt's answer decides: success, the endpoint gone, or the next attempt on the
Standard Webhooks schedule with jitter, or when Retry-After says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.escalation.domain.retry import (
    JITTER,
    MAX_RETRY_AFTER_S,
    STANDARD_SCHEDULE_S,
    Answer,
    Verdict,
    next_attempt,
    retry_after_s,
)

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def middle() -> float:
    return 0.5  # no jitter


def test_the_standard_schedule_after_each_failure_then_dead() -> None:
    assert STANDARD_SCHEDULE_S[:3] == (5.0, 300.0, 1800.0) and STANDARD_SCHEDULE_S[-1] == 86400.0
    for attempts, delay in enumerate(STANDARD_SCHEDULE_S, start=1):
        step = next_attempt(Answer(500, "Internal Server Error"), attempts=attempts, now=NOW, draw=middle)
        assert step.verdict is Verdict.RETRY
        assert step.due == NOW + timedelta(seconds=delay)
        assert step.error == "HTTP 500: Internal Server Error"
    last = next_attempt(Answer(None, "connection refused"), attempts=10, now=NOW, draw=middle)
    assert last.due is None and last.error == "connection refused"


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.999999])
def test_jitter_stays_within_its_share_of_the_delay(draw: float) -> None:
    step = next_attempt(Answer(None, "timeout"), attempts=2, now=NOW, draw=lambda: draw)
    assert step.due is not None
    delay = (step.due - NOW).total_seconds()
    assert 300 * (1 - JITTER) <= delay <= 300 * (1 + JITTER)


def test_2xx_is_delivered_and_410_is_gone() -> None:
    for status in (200, 201, 202, 204, 299):
        assert next_attempt(Answer(status), attempts=1, now=NOW, draw=middle).verdict is Verdict.DELIVERED
    gone = next_attempt(Answer(410, "Gone"), attempts=1, now=NOW, draw=middle)
    assert gone.verdict is Verdict.GONE and gone.due is None and "disabled" in gone.error
    for status in (300, 301, 400, 404, 500):
        assert next_attempt(Answer(status), attempts=1, now=NOW, draw=middle).verdict is Verdict.RETRY


@pytest.mark.parametrize("status", [429, 503, 502, 504])
def test_throttling_honours_retry_after_in_seconds_or_as_a_date(status: int) -> None:
    step = next_attempt(Answer(status, retry_after="7"), attempts=1, now=NOW, draw=middle)
    assert step.due == NOW + timedelta(seconds=7)
    date = "Sun, 22 Nov 2026 09:02:00 GMT"
    step = next_attempt(Answer(status, retry_after=date), attempts=1, now=NOW, draw=middle)
    assert step.due == NOW + timedelta(minutes=2)


def test_a_retry_after_elsewhere_or_unusable_falls_back_to_the_schedule() -> None:
    five_s = NOW + timedelta(seconds=5)
    assert next_attempt(Answer(500, retry_after="60"), attempts=1, now=NOW, draw=middle).due == five_s
    assert next_attempt(Answer(429, retry_after="soon"), attempts=1, now=NOW, draw=middle).due == five_s
    assert retry_after_s("99999999", NOW) == MAX_RETRY_AFTER_S
    assert retry_after_s("Sat, 21 Nov 2026 09:00:00 GMT", NOW) == 0.0  # in the past: at once
    assert retry_after_s(None, NOW) is None


def test_throttling_still_ends_when_the_schedule_is_spent() -> None:
    step = next_attempt(Answer(429, retry_after="1"), attempts=3, now=NOW, schedule=(1.0, 1.0), draw=middle)
    assert step.due is None and step.verdict is Verdict.RETRY
