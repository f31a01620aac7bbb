"""Runs N worker processes of the hub on one HTTP port and keeps them running.

The kernel spreads connections over the workers (SO_REUSEPORT); their store consumers share one
JetStream deliver group, so each observation is written by exactly one of them. A worker that dies
is started again after a short back-off. Metrics of all workers are summed through
prometheus_client's multiprocess directory under the data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from services.common.errors import SafetyhubError
from services.common.lifecycle import SHUTDOWN_BOUNDS
from services.common.logging import get_logger
from services.hub.bootstrap import Endpoints
from services.hub.worker import READY_LINE

log = get_logger(__name__)

# A worker stops in stages within SHUTDOWN_BOUNDS.total; then its interpreter exits. Past this it
# is killed: what it had not acked is delivered again.
WORKER_STOP_GRACE_S = SHUTDOWN_BOUNDS.total + 5.0


class WorkerFailed(SafetyhubError):
    pass


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    count: int
    host: str
    port: int
    data_dir: Path
    config_path: Path | None
    endpoints: Endpoints


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class Supervisor:
    def __init__(self, plan: WorkerPlan) -> None:
        self._plan = plan
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = False
        self._metrics_dir = plan.data_dir / "metrics"

    @property
    def http_url(self) -> str:
        return f"http://{self._plan.host}:{self._plan.port}"

    def _command(self) -> list[str]:
        plan = self._plan
        command = [sys.executable, "-m", "services.hub.worker", "--http-port", str(plan.port)]
        command += ["--data-dir", str(plan.data_dir)]
        if plan.config_path is not None:
            command += ["--config", str(plan.config_path)]
        return command

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SAFETYHUB_NATS_URL"] = self._plan.endpoints.nats_url
        env["SAFETYHUB_DATABASE_URL"] = self._plan.endpoints.database_url
        env["PROMETHEUS_MULTIPROC_DIR"] = str(self._metrics_dir)
        return env

    async def _spawn(self, slot: int, ready_within: float = 60.0) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self._command(),
            env=self._env(),
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
        assert proc.stdout is not None  # stdout=PIPE above
        # Known before it is ready: a stop that cuts this wait short stops it with the others.
        self._procs[slot] = proc
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), ready_within)
        except TimeoutError:
            line = b""
        if line.decode().strip() != READY_LINE:
            del self._procs[slot]
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise WorkerFailed(
                f"worker {slot} did not start (exit code {proc.returncode}); see its log above"
            )
        log.info("worker_started", slot=slot, pid=proc.pid)

    async def start(self) -> None:
        # Samples of a previous run must not be summed into this one.
        shutil.rmtree(self._metrics_dir, ignore_errors=True)
        self._metrics_dir.mkdir(parents=True)
        await asyncio.gather(*(self._spawn(slot) for slot in range(self._plan.count)))

    async def run_until(self, stop: asyncio.Event) -> None:
        """Watch the workers, restarting any that dies, until `stop` is set."""
        backoff = 1.0
        while not stop.is_set():
            waits = {asyncio.create_task(p.wait()): slot for slot, p in self._procs.items()}
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([*waits, stopper], return_when=asyncio.FIRST_COMPLETED)
            for task in [*waits, stopper]:
                if task not in done:
                    task.cancel()
            if stop.is_set():
                return
            for task in done:
                slot = waits.get(task)
                if slot is None:
                    continue
                log.error("worker_died", slot=slot, exit_code=task.result(), restart_in_s=backoff)
                if not await self._restart(slot, backoff, stop):
                    return
                backoff = min(backoff * 2, 30.0)

    async def _restart(self, slot: int, backoff: float, stop: asyncio.Event) -> bool:
        """Start a worker again after `backoff`; False, at once, if `stop` is set meanwhile.

        The back-off (up to 30 s) and the wait for the new worker to be ready (up to 60 s) must
        not delay a shutdown; a worker cut short is stopped by `stop()` with the others.
        """

        async def restart() -> None:
            await asyncio.sleep(backoff)
            await self._spawn(slot)

        restarting = asyncio.create_task(restart())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([restarting, stopper], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not restarting.done():
            restarting.cancel()
            await asyncio.wait([restarting])
            return False
        try:
            restarting.result()
        except WorkerFailed as err:
            log.error("worker_restart_failed", slot=slot, error=str(err))
        return True

    async def stop(self, grace: float = WORKER_STOP_GRACE_S) -> None:
        for proc in self._procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        waits = [asyncio.create_task(p.wait()) for p in self._procs.values()]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=grace)
            for proc in self._procs.values():
                if proc.returncode is None:
                    log.warning("worker_killed", pid=proc.pid)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        self._procs.clear()
