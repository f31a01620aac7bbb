"""Shared fixtures: real NATS (JetStream) and PostgreSQL, embedded or named by the environment.

SAFETYHUB_NATS_URL / SAFETYHUB_DATABASE_URL point the suite at external servers; otherwise one
embedded nats-server and one embedded PostgreSQL serve the whole session. SAFETYHUB_MQTT_URL names
an MQTT broker (Mosquitto) likewise; otherwise the hub's embedded broker serves the MQTT tests.
Isolation per test: a fresh database (CREATE DATABASE) and every stream of the server (with its
consumers) deleted before the test, so the streams of a service added to the registry start empty
too. The suite owns the servers it is given: do not point it at production.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import msgspec
import nats
import pytest

from services.common.auth.keys import create_key
from services.common.bus.streams import StreamSpec
from services.common.db import migrations
from services.common.db.pool import create_pool
from services.common.embedded import EmbeddedNats, EmbeddedPostgres
from services.common.settings import HttpConfig, HubConfig, StreamConfig
from services.hub.bootstrap import Endpoints, Hub
from services.hub.registry import REGISTRY
from services.ingest.bridges.mqtt_broker import EmbeddedBroker
from services.store.config import StoreConfig

REPO = Path(__file__).resolve().parent.parent
DEMO_SITES = REPO / "sites" / "ulsan-demo.yaml"
EXTRA_SITE = REPO / "tests" / "fixtures" / "second-refinery-site.yaml"
T = TypeVar("T")


def reachable_temp_dir(prefix: str) -> Path:
    # Not pytest's tmp_path: it sits under a 0700 /tmp/pytest-of-<user>, which the unprivileged
    # account the embedded PostgreSQL runs as (when tests run as root) cannot traverse.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A directory of this test that the embedded PostgreSQL's account can reach; removed after."""
    path = reachable_temp_dir("safetyhub-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def session_dir() -> Iterator[Path]:
    path = reachable_temp_dir("safetyhub-tests-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
async def postgres_admin_url(session_dir: Path) -> AsyncIterator[str]:
    external = os.environ.get("SAFETYHUB_DATABASE_URL")
    if external:
        yield external
        return
    server = EmbeddedPostgres(session_dir / "pg")
    url = await server.start()
    yield url
    await server.stop()


@pytest.fixture(scope="session")
async def nats_server_url(session_dir: Path) -> AsyncIterator[str]:
    external = os.environ.get("SAFETYHUB_NATS_URL")
    if external:
        yield external
        return
    server = EmbeddedNats(session_dir / "nats")
    url = await server.start()
    yield url
    await server.stop()


@pytest.fixture(scope="session")
async def mqtt_url() -> AsyncIterator[str]:
    """An MQTT broker: SAFETYHUB_MQTT_URL's, or the embedded one on a free loopback port."""
    external = os.environ.get("SAFETYHUB_MQTT_URL")
    if external:
        yield external
        return
    broker = EmbeddedBroker("127.0.0.1", 0)
    url = await broker.start()
    yield url
    await broker.stop()


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture
async def database_url(postgres_admin_url: str) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(postgres_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield with_database(postgres_admin_url, name)
    admin = await asyncpg.connect(postgres_admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def migrated_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on this test's fresh database with every migration applied."""
    pool = await create_pool(database_url, min_size=1, max_size=4)
    await migrations.apply(pool, REGISTRY.migrations())
    yield pool
    await pool.close()


@pytest.fixture
async def nats_url(nats_server_url: str) -> str:
    """The session's NATS server with no stream (nor consumer) left, so each test starts empty."""
    nc = await nats.connect(nats_server_url)
    js = nc.jetstream()
    for name in await js.streams_info():
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(name.config.name)
    await nc.close()
    return nats_server_url


def hub_streams(**bus: StreamConfig) -> list[StreamSpec]:
    """Every registered service's streams and DEADLETTER, with the `bus:` limits given."""
    config = REGISTRY.config_type()()
    config = msgspec.structs.replace(config, bus=msgspec.structs.replace(config.bus, **bus))
    return REGISTRY.streams(config)


def hub_config(**overrides: object) -> HubConfig:
    """Defaults for tests: a free port, the demo sites, short redelivery so recovery is quick."""
    base = REGISTRY.config_type()(
        http=HttpConfig(port=0),
        sites=[str(DEMO_SITES), str(EXTRA_SITE)],
        store=StoreConfig(ack_wait_s=2.0, batch_wait_ms=5),
    )
    return msgspec.structs.replace(base, **overrides)


@dataclass
class RunningHub:
    hub: Hub
    url: str
    keys: dict[str, str]
    session: aiohttp.ClientSession

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[key]}"}


@pytest.fixture
async def running_hub(nats_url: str, database_url: str) -> AsyncIterator[RunningHub]:
    hub = Hub(hub_config(), REPO, Endpoints(nats_url, database_url))
    await hub.start()
    keys = {
        "gateway": await create_key(hub.pool, tenant="ulsan-refining", role="gateway"),
        "gateway_cdu_only": await create_key(
            hub.pool, tenant="ulsan-refining", role="gateway", sites=["ulsan-refinery"]
        ),
        "mipo_gateway": await create_key(hub.pool, tenant="mipo-petrochem", role="gateway"),
        "detector_101": await create_key(
            hub.pool,
            tenant="ulsan-refining",
            role="gateway",
            sites=["ulsan-refinery"],
            devices=["gd-cdu1-101"],
        ),
        "viewer": await create_key(hub.pool, tenant="ulsan-refining", role="viewer"),
        "mipo_viewer": await create_key(hub.pool, tenant="mipo-petrochem", role="viewer"),
    }
    async with aiohttp.ClientSession() as session:
        yield RunningHub(hub, hub.http_url, keys, session)
    await hub.stop()


async def eventually(probe: Callable[[], Awaitable[T | None]], *, timeout: float = 15.0, what: str = "") -> T:
    """Poll `probe` until it returns something truthy, or fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or probe}")
        await asyncio.sleep(0.05)
