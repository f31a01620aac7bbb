"""A hub on embedded servers of its own, started as `safetyhub up` does, for tests that signal them.

The servers are found the way an operator finds them: by the pid files in the data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import psutil
from prometheus_client.parser import text_string_to_metric_families

from services.common.auth.keys import create_key
from services.hub.bootstrap import Endpoints, Hub
from services.hub.runtime import hub_endpoints
from tests.conftest import REPO, hub_config


@dataclass
class EmbeddedHub:
    hub: Hub
    endpoints: Endpoints
    data_dir: Path
    session: aiohttp.ClientSession
    key: str

    @property
    def url(self) -> str:
        return self.hub.http_url

    def nats_pid(self) -> int:
        return int((self.data_dir / "nats" / "nats-server.pid").read_text().strip())

    def postgres_pid(self) -> int:
        """The postmaster's pid; its backends share its process group."""
        return int((self.data_dir / "pg" / "data" / "postmaster.pid").read_text().splitlines()[0])

    async def post(self, ids: list[str]) -> int:
        body = msgspec.json.encode(
            [
                {"id": i, "site": "ulsan-refinery", "device": "gd-cdu1-101", "kind": "gas.h2s", "value": 1.0}
                for i in ids
            ]
        )
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        async with self.session.post(
            self.url + "/v1/observations", data=io.BytesIO(body), headers=headers
        ) as resp:
            return resp.status

    async def stored(self, ids: list[str]) -> int:
        count: int = await self.hub.pool.fetchval(
            "SELECT count(*) FROM observations WHERE id = ANY($1::text[])", ids
        )
        return count

    async def readyz(self) -> tuple[int, dict[str, str], float]:
        """Status, the checks, and how long the answer took."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with self.session.get(self.url + "/readyz") as resp:
            body: dict[str, Any] = await resp.json()
            return resp.status, body["checks"], loop.time() - started

    async def metric(self, name: str, **labels: str) -> float | None:
        """A sample as /metrics shows it, or None if it is not there."""
        async with self.session.get(self.url + "/metrics") as resp:
            text = await resp.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return None


@contextlib.asynccontextmanager
async def embedded_hub(data_dir: Path) -> AsyncIterator[EmbeddedHub]:
    async with hub_endpoints(data_dir, hub_config()) as endpoints:
        hub = Hub(hub_config(), REPO, endpoints)
        await hub.start()
        try:
            key = await create_key(hub.pool, tenant="ulsan-refining", role="gateway")
            async with aiohttp.ClientSession() as session:
                yield EmbeddedHub(hub, endpoints, data_dir, session, key)
        finally:
            await hub.stop()


def is_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


@contextlib.contextmanager
def frozen(pid: int, *, with_children: bool = False) -> Iterator[None]:
    """SIGSTOP a server (and its child processes) for the block; SIGCONT whatever happens."""
    os.kill(pid, signal.SIGSTOP)
    # Listed once the parent is stopped, so it forks no child after the list is made.
    # (PostgreSQL's backends each start a session of their own: a process group would miss them.)
    pids = [pid]
    try:
        if with_children:
            for child in psutil.Process(pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.send_signal(signal.SIGSTOP)
                    pids.append(child.pid)
        yield
    finally:
        for stopped in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(stopped, signal.SIGCONT)
