"""Keeps an embedded server running: one that dies is started again, on its port, with back-off.

The hub handed the server's URL to its services and worker processes at start, and their clients
reconnect by themselves (NATS endlessly, the asyncpg pool on the next acquire), so a restart on the
same port and data is all it takes for the hub to recover. The watcher sees the exit through the
child's `wait()`: no polling, and a frozen (stopped) server is not mistaken for a dead one; that is
what /readyz reports. During shutdown the watcher is cancelled first, so a server being stopped is
never restarted.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import Counter, Gauge

from services.common.logging import get_logger

log = get_logger(__name__)

RESTARTS = Counter(
    "safetyhub_embedded_server_restarts", "Embedded servers started again after they died", ["server"]
)
UP = Gauge(
    "safetyhub_embedded_server_up",
    "1 while the embedded server runs, 0 while it is down or being restarted",
    ["server"],
    multiprocess_mode="livemax",
)


class Restartable(Protocol):
    """What EmbeddedNats and EmbeddedPostgres offer to be supervised."""

    @property
    def pid(self) -> int | None: ...

    async def start(self) -> str: ...

    async def restart(self) -> None: ...

    async def wait(self) -> int: ...

    async def stop(self, timeout: float = ...) -> None: ...  # noqa: ASYNC109 - their public API


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits before restarting: `first_s` doubling to `max_s`, from `first_s` again once stable."""

    first_s: float = 0.5
    max_s: float = 30.0
    # A server that ran this long before dying had recovered: its next death is a new failure.
    stable_after_s: float = 60.0

    def first(self, previous: float | None, ran_s: float) -> float:
        """The wait after a death, given the wait before the last restart and how long it then ran."""
        if previous is None or ran_s >= self.stable_after_s:
            return self.first_s
        return self.following(previous)

    def following(self, previous: float) -> float:
        """The wait after a restart attempt that failed."""
        return min(previous * 2, self.max_s)


def _exit_reason(code: int) -> str:
    # asyncio reports death by a signal as the negated signal number.
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class Supervised:
    """An embedded server plus the task that restarts it when it dies."""

    def __init__(self, server: Restartable, name: str, backoff: Backoff | None = None) -> None:
        self._server = server
        self._name = name
        self._backoff = backoff or Backoff()
        self._watcher: asyncio.Task[None] | None = None
        self._up = False
        self.restarts = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def up(self) -> bool:
        """Whether the server runs (False from its death until it answers again)."""
        return self._up

    @property
    def pid(self) -> int | None:
        return self._server.pid

    async def start(self) -> str:
        """Start the server (errors propagate: a hub that cannot start it does not start) and watch it."""
        url = await self._server.start()
        self._set_up(True)
        if self._watcher is not None:  # started before: one watcher is enough
            return url
        self._watcher = asyncio.create_task(self._watch(), name=f"supervise-{self._name}")
        self._watcher.add_done_callback(self._watch_ended)
        return url

    def _watch_ended(self, watcher: asyncio.Task[None]) -> None:
        # The watcher only ends by being cancelled; anything else is a bug worth a loud line.
        if not watcher.cancelled() and watcher.exception() is not None:
            log.error("embedded_server_unsupervised", server=self._name, error=repr(watcher.exception()))

    async def stop(self) -> None:
        """Stop watching, then stop the server. Safe to call twice or before start."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            # Not `await watcher`: that would re-raise its CancelledError here as ours.
            await asyncio.wait([watcher])
        await self._server.stop()
        self._set_up(False)

    def _set_up(self, up: bool) -> None:
        self._up = up
        UP.labels(self._name).set(1 if up else 0)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        delay: float | None = None
        started_at = loop.time()
        while True:
            pid = self._server.pid
            code = await self._server.wait()
            died_at = loop.time()
            self._set_up(False)
            delay = self._backoff.first(delay, died_at - started_at)
            log.error(
                "embedded_server_died",
                server=self._name,
                pid=pid,
                exit_code=code,
                reason=_exit_reason(code),
                ran_s=round(died_at - started_at, 1),
                restart_in_s=delay,
            )
            delay = await self._restart(delay)
            started_at = loop.time()
            self.restarts += 1
            RESTARTS.labels(self._name).inc()
            self._set_up(True)
            log.warning(
                "embedded_server_restarted",
                server=self._name,
                pid=self._server.pid,
                down_s=round(started_at - died_at, 2),
                restarts=self.restarts,
            )

    async def _restart(self, delay: float) -> float:
        """Try until the server answers again; return the wait that preceded the successful try."""
        while True:
            await asyncio.sleep(delay)
            try:
                await self._server.restart()
            except Exception as err:  # whatever went wrong, the watcher must live on and retry
                delay = self._backoff.following(delay)
                log.error(
                    "embedded_server_restart_failed", server=self._name, error=str(err), retry_in_s=delay
                )
                continue
            return delay
