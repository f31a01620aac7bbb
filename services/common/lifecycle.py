"""Shutdown in stages, each with a time bound, so one stuck dependency cannot hold a process forever.

A process stops in order (stop intake, let consumers commit, drain the bus, close the pool), and
each stage is given a bound. A stage that overruns it is logged (`shutdown_stage_overran`),
cancelled and left behind without being awaited (cancelling asyncpg or nats-py work against a
frozen server can itself wait for that server), its `fallback` (a forceful close) runs, and the
next stage starts. A stage that fails is logged and the next starts too. So the whole shutdown
takes at most the sum of the bounds, and `shutdown_complete` tells how long each stage took.

What is abandoned loses nothing accepted: an HTTP request cut off got no answer (its client
retries), a batch a consumer did not ack is redelivered, and the database keeps only what was
committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from nats.aio.client import Client as NATS

from services.common.db.pool import abandon
from services.common.logging import get_logger

log = get_logger(__name__)

Outcome = Literal["done", "overran", "failed"]


@dataclass(frozen=True, slots=True)
class ShutdownBounds:
    """The bounds of a hub process's stages, in seconds. Constants rather than configuration: what
    matters is that their sum fits the orchestrator's grace period (45 s in deploy/k8s) with room
    to spare, and an operator has no better figure for any one of them."""

    # aiohttp's own wait for requests in flight (`shutdown_timeout`): an accepted ingest post waits
    # at most the publisher's 5 s ack timeout and a query its statement timeout; a body still
    # arriving is cut off and its client retries. aiohttp then cancels what is left.
    http_drain: float = 8.0
    # Stop intake: long-lived responses closed, in-flight requests finished or cancelled (the
    # drain above plus 2 s for cancelled handlers to unwind).
    intake: float = 10.0
    # Consumers commit and ack the batch in hand: milliseconds normally; an unacked batch is
    # redelivered, so giving up costs a duplicate the store recognises, not a loss.
    consumers: float = 10.0
    # The publisher's waiters are failed, then NATS drains (unsubscribe, flush): milliseconds.
    bus: float = 5.0
    # The pool waits for connections to come back, then says goodbye to the server on each;
    # against a frozen server that never ends, so past this bound its connections are dropped.
    database: float = 5.0

    @property
    def total(self) -> float:
        """The longest a staged shutdown can take (`http_drain` is part of `intake`)."""
        return self.intake + self.consumers + self.bus + self.database


SHUTDOWN_BOUNDS = ShutdownBounds()


@dataclass(frozen=True, slots=True)
class Stage:
    """One step of a shutdown: `run` is started when the previous stage has ended or was given up."""

    name: str
    bound_s: float
    run: Callable[[], Awaitable[None]]
    # Called (synchronously) when `run` overran or failed, e.g. a pool's `terminate`.
    fallback: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True)
class StageReport:
    name: str
    seconds: float
    outcome: Outcome


async def run_stages(stages: Sequence[Stage]) -> list[StageReport]:
    """Run `stages` in order, each within its bound; return (and log) what each took."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    reports: list[StageReport] = []
    for stage in stages:
        started = loop.time()
        outcome = await _run_stage(stage)
        reports.append(StageReport(stage.name, round(loop.time() - started, 3), outcome))
    log.info(
        "shutdown_complete",
        seconds=round(loop.time() - began, 3),
        bound_s=sum(s.bound_s for s in stages),
        stages={r.name: r.seconds for r in reports},
        overran=[r.name for r in reports if r.outcome == "overran"],
        failed=[r.name for r in reports if r.outcome == "failed"],
    )
    return reports


async def _run_stage(stage: Stage) -> Outcome:
    task = asyncio.ensure_future(stage.run())
    try:
        done, _ = await asyncio.wait({task}, timeout=stage.bound_s)
    except asyncio.CancelledError:  # the shutdown itself was cancelled: leave the stage behind too
        abandon(task)
        raise
    outcome: Outcome
    if task not in done:
        abandon(task)
        log.warning("shutdown_stage_overran", stage=stage.name, bound_s=stage.bound_s)
        outcome = "overran"
    elif task.cancelled() or task.exception() is not None:
        error = "cancelled" if task.cancelled() else repr(task.exception())
        log.error("shutdown_stage_failed", stage=stage.name, error=error)
        outcome = "failed"
    else:
        return "done"
    if stage.fallback is not None:
        try:
            stage.fallback()
        except Exception as err:  # the next stages must run whatever this one left behind
            log.error("shutdown_fallback_failed", stage=stage.name, error=repr(err))
    return outcome


async def drain_bus(nc: NATS) -> None:
    """Drain a NATS connection (subscriptions, then what is being published), then it is closed.

    A connection that is reconnecting cannot drain (nats-py refuses); it is closed instead, or
    it would go on reconnecting after the process thinks it stopped.
    """
    if nc.is_closed:
        return
    try:
        await nc.drain()
    except Exception as err:
        log.warning("nats_drain_failed", error=repr(err))
        await nc.close()
