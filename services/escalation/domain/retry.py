"""What an attempt's answer means and when the next attempt is due. Pure: time is a parameter,
randomness (the jitter) is a parameter.

Standard Webhooks: a 2xx is success; 410 Gone disables the endpoint (the receiver says it will
never take another); 429 and 503 (and 502/504, a gateway in front of a busy receiver) throttle and
honour `Retry-After`; anything else, a timeout, a refused or closed connection or an answer that
is not HTTP, is a failed attempt retried on the schedule: now, 5 s, 5 min, 30 min, 2 h, 5 h,
10 h, 14 h, 20 h, 24 h after the previous attempt, each with jitter so that a receiver coming back
after an outage is not hit by every sender at the same instant.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

# Delays before attempt 2, 3, ... (attempt 1 is at once), in seconds.
STANDARD_SCHEDULE_S: tuple[float, ...] = (
    5.0,
    5 * 60.0,
    30 * 60.0,
    2 * 3600.0,
    5 * 3600.0,
    10 * 3600.0,
    14 * 3600.0,
    20 * 3600.0,
    24 * 3600.0,
)
# +/- this share of each delay, drawn uniformly.
JITTER = 0.1
# A Retry-After beyond this is taken as this: a receiver may not park a safety notice for a day.
MAX_RETRY_AFTER_S = 3600.0
_THROTTLED = frozenset({429, 502, 503, 504})


class Verdict(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # failed; the next attempt per the schedule (or Retry-After), or dead
    GONE = "gone"  # 410: the endpoint is disabled, the delivery dead


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt got: an HTTP status, or no answer (`error` says why)."""

    status: int | None
    error: str = ""
    retry_after: str | None = None  # the raw header, when there was one


@dataclass(frozen=True, slots=True)
class Next:
    verdict: Verdict
    due: datetime | None  # the next attempt; None: no more attempts
    error: str  # what to show as the last error ("" on success)


def verdict_of(answer: Answer) -> Verdict:
    if answer.status is not None and 200 <= answer.status < 300:
        return Verdict.DELIVERED
    if answer.status == 410:
        return Verdict.GONE
    return Verdict.RETRY


def retry_after_s(raw: str | None, now: datetime) -> float | None:
    """Seconds a `Retry-After` asks for (delta-seconds or an HTTP date), capped; None if unusable."""
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return min(float(raw), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER_S)


def jittered(delay_s: float, draw: Callable[[], float]) -> float:
    """`delay_s` moved by up to JITTER of itself; `draw` returns a number in [0, 1)."""
    return max(0.0, delay_s * (1 + JITTER * (2 * draw() - 1)))


def describe(answer: Answer) -> str:
    if answer.status is None:
        return answer.error or "no answer"
    text = f"HTTP {answer.status}"
    return f"{text}: {answer.error}" if answer.error else text


def next_attempt(
    answer: Answer,
    *,
    attempts: int,
    now: datetime,
    schedule: Sequence[float] = STANDARD_SCHEDULE_S,
    draw: Callable[[], float],
) -> Next:
    """After attempt number `attempts` (1 for the first) got `answer`: what follows."""
    verdict = verdict_of(answer)
    if verdict is Verdict.DELIVERED:
        return Next(verdict, None, "")
    error = describe(answer)
    if verdict is Verdict.GONE:
        return Next(verdict, None, error + " (the endpoint is disabled)")
    if attempts > len(schedule):
        return Next(verdict, None, error)
    delay = jittered(schedule[attempts - 1], draw)
    if answer.status in _THROTTLED:
        asked = retry_after_s(answer.retry_after, now)
        if asked is not None and math.isfinite(asked):
            # The receiver's own figure, not jittered: it said when it can take more.
            delay = asked
    return Next(verdict, now + timedelta(seconds=delay), error)
