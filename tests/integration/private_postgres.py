"""An embedded PostgreSQL that a test module owns alone, so its tests may freeze or kill it.

Freezing is SIGSTOP to the postmaster and every backend, as a paused VM or a stalled disk would
leave it (the postmaster alone is not enough: its existing backends go on answering).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import asyncpg
import psutil

from services.common.embedded import EmbeddedPostgres
from tests.conftest import reachable_temp_dir, with_database


class PrivatePostgres:
    """An embedded PostgreSQL of this module, which tests may freeze or kill and start again."""

    def __init__(self) -> None:
        self.data_dir = reachable_temp_dir("safetyhub-outage-")
        self.server = EmbeddedPostgres(self.data_dir)
        self.admin_url = ""

    async def new_database(self) -> str:
        """A fresh database on this server, for one hub; its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        admin = await asyncpg.connect(self.admin_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return with_database(self.admin_url, name)

    async def start(self) -> None:
        port = urlsplit(self.admin_url).port if self.admin_url else None
        self.server = EmbeddedPostgres(self.data_dir, port=port)
        self.admin_url = await self.server.start()

    def processes(self) -> list[psutil.Process]:
        if self.server.pid is None:
            raise RuntimeError("PostgreSQL is not running")
        postmaster = psutil.Process(self.server.pid)
        return [postmaster, *postmaster.children(recursive=True)]

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP the server and its backends for the block; SIGCONT whatever happens."""
        stopped: list[psutil.Process] = []
        try:
            for process in self.processes():  # the postmaster first: it forks no one meanwhile
                process.suspend()
                stopped.append(process)
            yield
        finally:
            for process in stopped:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.resume()

    @contextlib.asynccontextmanager
    async def killed(self) -> AsyncIterator[None]:
        """SIGKILL the server and its backends; start it again (same port) after the block."""
        try:
            for process in self.processes():
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
            yield
        finally:
            await self.server.stop()
            await self.start()
