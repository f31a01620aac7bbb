"""A service added to the registry alone is run, migrated, configured, checked and shown.

The toy service (tests/toy_service) is one package and, here, one line: the registry below. No
other file of the hub learns of it, yet `up` serves its routes, `run toy` runs it alone, `migrate
--service toy` creates its table, /readyz runs its check and the live view shows its row.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import asyncpg
import msgspec
import nats
import pytest
from prometheus_client import REGISTRY as METRICS
from rich.console import Console

from services.common.auth.keys import create_key
from services.common.errors import ConfigError
from services.common.settings import HubConfig, StreamConfig
from services.hub import commands
from services.hub.bootstrap import Endpoints, Hub
from services.hub.cli import _parser
from services.hub.dashboard import FlowRates, FlowSnapshot, panel_lines, render
from services.hub.registry import REGISTRY, Registry
from tests.conftest import REPO, hub_config
from tests.toy_service import PINGS, TOY

pytestmark = pytest.mark.integration

WITH_TOY = Registry(services=(*REGISTRY.services, TOY))


def toy_config(**overrides: object) -> HubConfig:
    """The tests' hub config, with the toy's section and its stream's limits set."""
    config = hub_config()
    fields = msgspec.structs.asdict(config)
    toy_type = WITH_TOY.config_type()
    section = TOY.config(greeting="annyeong")
    bus = msgspec.structs.replace(toy_type().bus, toys=StreamConfig(max_age_hours=5.0, storage="memory"))
    return toy_type(**{**fields, "bus": bus, "toy": section, **overrides})


async def tables(database_url: str) -> set[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        components = await conn.fetch("SELECT DISTINCT component FROM safetyhub_schema_migrations")
    finally:
        await conn.close()
    return {r["tablename"] for r in rows} | {f"component:{r['component']}" for r in components}


@pytest.fixture
async def toy_hub(nats_url: str, database_url: str) -> AsyncIterator[Hub]:
    hub = Hub(toy_config(), REPO, Endpoints(nats_url, database_url), service_registry=WITH_TOY)
    await hub.start()
    yield hub
    await hub.stop()


async def test_up_runs_the_toy_with_its_config_stream_table_routes_permission_and_readiness(
    toy_hub: Hub, nats_url: str, database_url: str
) -> None:
    assert toy_hub.services == (
        "ingest",
        "store",
        "alarms",
        "incidents",
        "escalation",
        "video",
        "feed",
        "toy",
    )
    viewer = await create_key(toy_hub.pool, tenant="ulsan-refining", role="viewer")
    gateway = await create_key(toy_hub.pool, tenant="ulsan-refining", role="gateway")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{toy_hub.http_url}/toy/ping") as resp:  # public: no key
            assert resp.status == 200
            assert await resp.json() == {"greeting": "annyeong"}  # from the `toy:` section
        notes = f"{toy_hub.http_url}/v1/toy/notes"
        async with session.get(notes, headers={"Authorization": f"Bearer {viewer}"}) as resp:
            assert resp.status == 200
            assert await resp.json() == {"notes": 0}  # its migration made the table
        async with session.get(notes, headers={"Authorization": f"Bearer {gateway}"}) as resp:
            assert resp.status == 403
        async with session.get(notes) as resp:
            assert resp.status == 401, "only the paths the toy declares public are"
        async with session.get(f"{toy_hub.http_url}/readyz") as resp:
            assert resp.status == 200
            assert (await resp.json())["checks"] == {
                "nats": "ok",
                "postgres": "ok",
                "alarms.alarm_rules": "ok",
                "alarms.alarm_consumer": "ok",
                "incidents.incident_rules": "ok",
                "incidents.incident_consumer": "ok",
                "incidents.incident_live_stream": "ok",
                "feed.feed_consumer": "ok",
                "escalation.escalation_consumer": "ok",
                "escalation.delivery_engine": "ok",
                "escalation.escalation_timer": "ok",
                "toy.started": "ok",
            }

    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().stream_info("TOYS")
    finally:
        await nc.close()
    assert info.config.subjects == ["toy.>"]
    assert info.config.max_age == pytest.approx(5 * 3600.0), "limits from bus.toys"
    assert {"toy_notes", "component:toy", "component:store"} <= await tables(database_url)


async def test_run_toy_runs_the_toy_alone_with_only_its_own_and_the_kernel_tables(
    nats_url: str, database_url: str
) -> None:
    args = _parser(WITH_TOY).parse_args(["run", "toy"])
    assert args.service == "toy"
    with pytest.raises(SystemExit):
        _parser(REGISTRY).parse_args(["run", "toy"])  # without the line, no such service

    hub = Hub(toy_config(), REPO, Endpoints(nats_url, database_url), ("toy",), service_registry=WITH_TOY)
    await hub.start()
    try:
        key = await create_key(hub.pool, tenant="ulsan-refining", role="admin")
        auth = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{hub.http_url}/toy/ping") as resp:
                assert resp.status == 200
            async with session.get(f"{hub.http_url}/v1/observations", headers=auth) as resp:
                assert resp.status == 404, "the store does not run here"
            async with session.get(f"{hub.http_url}/readyz") as resp:
                assert resp.status == 200, await resp.text()
                assert "toy.started" in (await resp.json())["checks"]
        nc = await nats.connect(nats_url)
        try:
            names = {s.config.name for s in await nc.jetstream().streams_info()}
        finally:
            await nc.close()
        assert names == {"TOYS", "DEADLETTER"}
    finally:
        await hub.stop()
    found = await tables(database_url)
    assert {"toy_notes", "component:toy", "component:auth"} <= found
    assert "component:store" not in found and "observations" not in found


async def test_migrate_names_the_toy_and_applies_its_migrations_with_the_kernels_only(
    database_url: str, reachable_dir: Path
) -> None:
    config = msgspec.structs.replace(
        toy_config(), database=msgspec.structs.replace(hub_config().database, url=database_url)
    )
    args = _parser(WITH_TOY).parse_args(["migrate", "--service", "toy"])
    assert await commands.migrate(config, reachable_dir, args.service, registry=WITH_TOY) == 0

    found = await tables(database_url)
    assert {"toy_notes", "component:toy", "component:auth"} <= found
    assert "component:store" not in found

    with pytest.raises(ConfigError, match="unknown services"):
        await commands.migrate(config, reachable_dir, ["toys"], registry=WITH_TOY)


def test_the_live_view_shows_the_toy_row() -> None:
    def pings() -> float:
        lines = panel_lines(METRICS.collect(), WITH_TOY.services)
        return sum(line.total for line in lines if (line.service, line.label) == ("toy", "Pings"))

    before = pings()
    PINGS.inc(3)
    assert pings() - before == 3

    lines = panel_lines(METRICS.collect(), WITH_TOY.services)
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(render({}, FlowSnapshot(), FlowRates(), lines))
    out = console.file.getvalue()
    assert "toy" in out and "Pings" in out


def test_the_toy_section_is_validated_strictly_with_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text("http:\n  port: 9090\ntoy:\n  greeting: hi\n  greting: typo\n")
    with pytest.raises(ConfigError) as info:
        WITH_TOY.load_config(path, env={})
    assert f"{path}:5" in str(info.value) and "toy.greting" in str(info.value)

    path.write_text("toy:\n  greeting: hi\nbus:\n  toys:\n    max_age_hours: 2\n")
    config, _ = WITH_TOY.load_config(path, env={})
    assert TOY.section(config) == TOY.config(greeting="hi")
    limits = {spec.name: spec.limits for spec in WITH_TOY.streams(config)}
    assert limits["TOYS"].max_age_hours == 2.0

    with pytest.raises(ConfigError):  # the hub without the toy's line does not know `toy:`
        REGISTRY.load_config(path, env={})


def test_a_service_run_alone_gets_the_streams_it_publishes_to_as_their_owner_configures_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text("bus:\n  observations:\n    max_age_hours: 5\n")
    config, _ = REGISTRY.load_config(path, env={})
    video = REGISTRY.select(["video"])
    (service,) = video
    # The video service consumes nothing: it publishes its detections to ingest's stream.
    assert (service.consumes, [s.name for s in service.publishes]) == ((), ["OBSERVATIONS"])
    specs = {spec.name: spec for spec in REGISTRY.streams(config, video)}
    # SNAPSHOTS is its own: the blurred copies of its snapshots, for the city feed.
    assert set(specs) == {"OBSERVATIONS", "SNAPSHOTS", "DEADLETTER"}
    assert specs["OBSERVATIONS"].limits.max_age_hours == 5.0
    everything = {spec.name: spec for spec in REGISTRY.streams(config)}
    assert specs["OBSERVATIONS"] == everything["OBSERVATIONS"]  # one declaration, its owner's


def test_two_services_of_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="share a name"):
        Registry(services=(*REGISTRY.services, replace(TOY, name="store")))
