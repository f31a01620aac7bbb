"""The loop both escalation timers run: a pass over the due rows every `poll_interval_s`.

A pass is one transaction that locks its rows (`FOR UPDATE SKIP LOCKED`), so any number of
workers run it side by side and each row is handled once. A full batch is followed by the next
pass at once (a backlog drains without waiting); a database or bus that is unavailable is logged
and tried again at the next tick; nothing a pass raises ends the loop.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib

from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import UnavailableError
from services.common.logging import get_logger

log = get_logger(__name__)
# How long `stop` lets the loop finish its pass before cancelling it: a pass cut short rolls back
# and its rows stay due for the next start, and a frozen database must not hold the shutdown.
STOP_WAIT_S = 0.5
BATCH = 200
_UNAVAILABLE: tuple[type[BaseException], ...] = (*TRANSIENT_DB_ERRORS, UnavailableError)


class TimerLoop(abc.ABC):
    def __init__(self, *, name: str, poll_interval_s: float) -> None:
        self._name = name
        self._poll = poll_interval_s
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.running = False

    @abc.abstractmethod
    async def run_pass(self) -> int:
        """One pass over the rows due now; how many it moved (at most BATCH of each kind)."""

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"escalation-{self._name}")
        self.running = True

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=STOP_WAIT_S)
            self._task.cancel()
        self.running = False

    async def _run(self) -> None:
        while not self._stopping.is_set():
            moved = 0
            try:
                moved = await self.run_pass()
            except _UNAVAILABLE as err:
                log.warning("escalation_timer_unavailable", timer=self._name, error=str(err))
            except Exception:  # never let the timer die: the next pass tries again
                log.exception("escalation_timer_failed", timer=self._name)
            if moved < BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._poll)
