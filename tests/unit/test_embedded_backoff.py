"""The waits before restarting an embedded server that died."""

from __future__ import annotations

from services.common.embedded import Backoff


def test_the_first_death_waits_the_first_step() -> None:
    assert Backoff().first(None, ran_s=0.1) == 0.5


def test_quick_deaths_double_the_wait_up_to_the_cap() -> None:
    backoff = Backoff(first_s=0.5, max_s=30.0)
    waits, wait = [], None
    for _ in range(9):
        wait = backoff.first(wait, ran_s=1.0)
        waits.append(wait)
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_failed_attempts_double_the_wait_up_to_the_cap() -> None:
    backoff = Backoff(first_s=0.5, max_s=3.0)
    assert [backoff.following(w) for w in (0.5, 1.0, 2.0, 3.0)] == [1.0, 2.0, 3.0, 3.0]


def test_a_server_that_ran_a_while_starts_from_the_first_step_again() -> None:
    backoff = Backoff(first_s=0.5, stable_after_s=60.0)
    assert backoff.first(30.0, ran_s=59.0) == 30.0
    assert backoff.first(30.0, ran_s=60.0) == 0.5
