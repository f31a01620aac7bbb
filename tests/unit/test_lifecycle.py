"""The staged shutdown: stages in order, each within its bound, a stuck one given up and logged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from services.common.lifecycle import SHUTDOWN_BOUNDS, Stage, run_stages

SLACK_S = 1.0  # a loaded machine may start a stage late; the bounds below are the design figures


def recording(done: list[str], name: str) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        await asyncio.sleep(0)
        done.append(name)

    return run


async def hangs_even_when_cancelled() -> None:
    """Like asyncpg closing a connection to a frozen server: cancelling it does not end it soon."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        await asyncio.sleep(5.0)  # far past any bound below (a second cancellation ends it)
        raise


async def test_stages_run_in_order_and_the_completion_line_has_each_duration() -> None:
    done: list[str] = []
    with structlog.testing.capture_logs() as logs:
        reports = await run_stages([Stage(n, 1.0, recording(done, n)) for n in ("a", "b", "c")])

    assert done == ["a", "b", "c"]
    assert [(r.name, r.outcome) for r in reports] == [("a", "done"), ("b", "done"), ("c", "done")]
    (complete,) = [e for e in logs if e["event"] == "shutdown_complete"]
    assert list(complete["stages"]) == ["a", "b", "c"]
    assert complete["bound_s"] == 3.0 and complete["overran"] == [] and complete["failed"] == []


async def test_a_stage_that_hangs_is_given_up_at_its_bound_and_the_next_stages_still_run() -> None:
    done: list[str] = []
    fallbacks: list[str] = []
    stages = [
        Stage("intake", 1.0, recording(done, "intake")),
        Stage("database", 0.3, hangs_even_when_cancelled, fallback=lambda: fallbacks.append("terminate")),
        Stage("after", 1.0, recording(done, "after")),
    ]
    started = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        reports = await run_stages(stages)
    took = time.monotonic() - started

    assert done == ["intake", "after"], "the stage after the stuck one ran"
    assert fallbacks == ["terminate"], "the stuck stage's forceful close ran"
    assert 0.3 <= took < 0.3 + SLACK_S, "the stuck stage was waited for its bound, not more"
    assert [r.outcome for r in reports] == ["done", "overran", "done"]
    overran = [e for e in logs if e["event"] == "shutdown_stage_overran"]
    assert overran == [
        {"event": "shutdown_stage_overran", "stage": "database", "bound_s": 0.3, "log_level": "warning"}
    ]
    (complete,) = [e for e in logs if e["event"] == "shutdown_complete"]
    assert complete["overran"] == ["database"]
    assert 0.3 <= complete["stages"]["database"] < 0.3 + SLACK_S


async def test_a_failing_stage_is_logged_and_falls_back_and_the_next_stages_still_run() -> None:
    done: list[str] = []
    fallbacks: list[str] = []

    async def fails() -> None:
        raise ConnectionResetError("gone")

    stages = [
        Stage("bus", 1.0, fails, fallback=lambda: fallbacks.append("bus")),
        Stage("database", 1.0, recording(done, "database")),
    ]
    with structlog.testing.capture_logs() as logs:
        reports = await run_stages(stages)

    assert done == ["database"] and fallbacks == ["bus"]
    assert [r.outcome for r in reports] == ["failed", "done"]
    (failed,) = [e for e in logs if e["event"] == "shutdown_stage_failed"]
    assert failed["stage"] == "bus" and "gone" in failed["error"]


async def test_a_failing_fallback_does_not_stop_the_shutdown() -> None:
    done: list[str] = []

    def broken() -> None:
        raise RuntimeError("terminate failed")

    with structlog.testing.capture_logs() as logs:
        await run_stages(
            [
                Stage("database", 0.1, hangs_even_when_cancelled, fallback=broken),
                Stage("z", 1.0, recording(done, "z")),
            ]
        )

    assert done == ["z"]
    assert [e["stage"] for e in logs if e["event"] == "shutdown_fallback_failed"] == ["database"]


def test_the_hub_shutdown_fits_the_grace_period_of_the_kubernetes_deployments() -> None:
    # deploy/k8s gives each pod 45 s between SIGTERM and SIGKILL; the hub must be done well before.
    assert SHUTDOWN_BOUNDS.total <= 45 - 10
    assert SHUTDOWN_BOUNDS.http_drain < SHUTDOWN_BOUNDS.intake, "aiohttp's drain fits its stage"
