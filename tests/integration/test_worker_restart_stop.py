"""A stop that arrives while the supervisor restarts a worker is not delayed by that restart.

The back-off before a restart (up to 30 s) and the wait for the new worker to be ready (up to
60 s) used to run to their end before the supervisor looked at the stop again.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from services.hub.bootstrap import Endpoints
from services.hub.supervisor import Supervisor, WorkerPlan
from services.hub.worker import READY_LINE
from tests.conftest import eventually

pytestmark = pytest.mark.integration

SLACK_S = 3.0


class FlakyWorkers(Supervisor):
    """The first worker is ready and dies at once; the one started in its place never gets ready."""

    def __init__(self, plan: WorkerPlan, started: Path) -> None:
        super().__init__(plan)
        self._started = started
        self.spawned = 0

    def _command(self) -> list[str]:
        self.spawned += 1
        if self.spawned == 1:
            return [sys.executable, "-c", f"print({READY_LINE!r}, flush=True)"]
        script = f"import pathlib, time; pathlib.Path({str(self._started)!r}).touch(); time.sleep(120)"
        return [sys.executable, "-c", script]


async def test_a_stop_during_a_worker_restart_ends_the_supervision_at_once(reachable_dir: Path) -> None:
    started = reachable_dir / "second-worker-started"
    plan = WorkerPlan(1, "127.0.0.1", 0, reachable_dir, None, Endpoints("nats://unused", "postgresql://unused"))
    supervisor = FlakyWorkers(plan, started)
    await supervisor.start()
    stop = asyncio.Event()
    watching = asyncio.create_task(supervisor.run_until(stop))
    try:

        async def second_worker_started() -> bool:
            return started.exists()

        await eventually(second_worker_started, timeout=10 + SLACK_S, what="the worker started again")
        begun = time.monotonic()
        stop.set()
        await asyncio.wait_for(asyncio.shield(watching), SLACK_S)
        assert time.monotonic() - begun < SLACK_S, "not after the new worker's 60 s readiness wait"
        starting = list(supervisor._procs.values())
    finally:
        stop.set()
        await supervisor.stop(grace=5.0)
        await asyncio.wait([watching])
    assert supervisor.spawned == 2
    assert [p.returncode is not None for p in starting] == [True], "the worker being started was stopped"
