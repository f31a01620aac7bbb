"""Migrations per service: `migrate --service` applies the kernel's and the named services' only,
and a process running one service neither migrates nor waits for another's tables."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import asyncpg
import msgspec
import pytest

from services.hub import commands
from services.hub.bootstrap import Endpoints, Hub
from services.hub.cli import _parser
from tests.conftest import REPO, hub_config

pytestmark = pytest.mark.integration


async def components(database_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT component, count(*) AS n FROM safetyhub_schema_migrations GROUP BY component"
        )
        observations = await conn.fetchval("SELECT to_regclass('observations') IS NOT NULL")
    finally:
        await conn.close()
    found = {r["component"]: r["n"] for r in rows}
    return found | ({"observations table": 1} if observations else {})


async def test_migrate_one_service_applies_the_kernels_and_that_services_migrations_only(
    database_url: str, reachable_dir: Path
) -> None:
    config = hub_config()
    config = msgspec.structs.replace(
        config, database=msgspec.structs.replace(config.database, url=database_url)
    )

    args = _parser().parse_args(["migrate", "--service", "ingest"])
    await commands.migrate(config, reachable_dir, args.service)
    kernel_only = {"auth": 3, "outbox": 1, "audit": 4}
    assert await components(database_url) == kernel_only, "ingest has no tables; the store's wait"

    args = _parser().parse_args(["migrate", "--service", "store"])
    await commands.migrate(config, reachable_dir, args.service)
    assert await components(database_url) == {
        "auth": 3,
        "outbox": 1,
        "audit": 4,
        "store": 3,
        "observations table": 1,
    }


async def test_a_process_running_ingest_is_ready_while_the_stores_migrations_are_pending(
    nats_url: str, database_url: str
) -> None:
    hub = Hub(hub_config(), REPO, Endpoints(nats_url, database_url), ("ingest",))
    await hub.start()
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{hub.http_url}/readyz") as resp:
            assert resp.status == 200, await resp.text()
    finally:
        await hub.stop()
    assert await components(database_url) == {"auth": 3, "outbox": 1, "audit": 4}, (
        "`run ingest` migrated another service"
    )
