"""Shared incidents upserted to an NGSI-LD context broker (a local aiohttp broker that records
what it receives) as smart-data-models Alert entities: valid against the Alert schema, retried
through an outage with nothing lost, and a refusal (4xx) kept with the broker's answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from services.common.auth.keys import create_key
from services.feed.config import FeedConfig, NgsiConfig
from services.feed.domain.ngsi import key_values
from services.hub.bootstrap import Endpoints, Hub
from tests.conftest import REPO, RunningHub, eventually, hub_config
from tests.integration.test_feed_service import post, put_policy, reading
from tests.unit.test_feed_ngsi import validator

TENANT = "ulsan-refining"


@dataclass
class Broker:
    """Answers `failures` upserts with 503, then 204; refuses every entity when `refuse` is set."""

    failures: int = 0
    refuse: bool = False
    calls: list[tuple[int, list[dict[str, Any]], dict[str, str]]] = field(default_factory=list)

    async def upsert(self, request: web.Request) -> web.Response:
        entities = json.loads(await request.read())
        if self.failures > 0:
            self.failures -= 1
            self.calls.append((503, entities, dict(request.headers)))
            return web.Response(status=503, text="broker restarting")
        if self.refuse:
            self.calls.append((400, entities, dict(request.headers)))
            return web.json_response(
                {
                    "type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
                    "title": "attribute not allowed",
                },
                status=400,
            )
        self.calls.append((204, entities, dict(request.headers)))
        return web.Response(status=204)

    def upserted(self) -> dict[str, dict[str, Any]]:
        """The latest entity of each id the broker took."""
        out: dict[str, dict[str, Any]] = {}
        for status, entities, _ in self.calls:
            if status == 204:
                out.update({e["id"]: e for e in entities})
        return out


@pytest.fixture
async def broker() -> AsyncIterator[tuple[Broker, str]]:
    state = Broker()
    app = web.Application()
    app.router.add_post("/ngsi-ld/v1/entityOperations/upsert", state.upsert)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield state, f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def ngsi_hub(nats_url: str, database_url: str, broker: tuple[Broker, str]) -> AsyncIterator[RunningHub]:
    ngsi = NgsiConfig(url=broker[1], tenant="ulsan", poll_ms=100, retry_max_s=1.0, timeout_s=2.0)
    config = hub_config(feed=FeedConfig(timer_poll_ms=100, batch_wait_ms=5, ngsi=ngsi))
    hub = Hub(config, REPO, Endpoints(nats_url, database_url))
    await hub.start()
    keys = {
        "gateway": await create_key(hub.pool, tenant=TENANT, role="gateway"),
        "admin": await create_key(hub.pool, tenant=TENANT, role="admin"),
    }
    async with aiohttp.ClientSession() as session:
        yield RunningHub(hub, hub.http_url, keys, session)
    await hub.stop()


async def test_a_shared_incident_reaches_the_broker_as_a_valid_alert_through_an_outage(
    ngsi_hub: RunningHub, broker: tuple[Broker, str]
) -> None:
    state, _ = broker
    state.failures = 3  # the broker is down for the first three upserts
    status, _ = await put_policy(ngsi_hub, {"level": "redacted"})
    assert status == 200
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    await post(ngsi_hub, [reading("gd-fcc2-203", "gas.h2s", "ppm", 25.0, at)])

    async def upserted() -> dict[str, dict[str, Any]]:
        return state.upserted()

    entities = await eventually(upserted, timeout=30, what="the Alert upserted after the outage")
    assert [s for s, _, _ in state.calls[:3]] == [503, 503, 503]
    incident_id = await ngsi_hub.hub.pool.fetchval("SELECT id FROM incidents WHERE type = 'gas_release'")
    entity = entities[f"urn:ngsi-ld:Alert:{incident_id}"]
    assert entity["category"]["value"] == "environment"
    for each in entities.values():
        assert not list(validator().iter_errors(key_values(each)))
        assert "gd-fcc2-203" not in json.dumps(each)
    assert state.calls[-1][2]["NGSILD-Tenant"] == "ulsan"
    assert state.calls[-1][2]["Content-Type"] == "application/ld+json"

    async def drained() -> bool:
        return not await ngsi_hub.hub.pool.fetchval("SELECT count(*) FROM feed_ngsi_pending")

    await eventually(drained, what="nothing left to upsert")
    assert not await ngsi_hub.hub.pool.fetchval("SELECT count(*) FROM feed_ngsi_dead")


async def test_an_alert_the_broker_refuses_is_kept_with_its_answer(
    ngsi_hub: RunningHub, broker: tuple[Broker, str]
) -> None:
    state, _ = broker
    state.refuse = True
    status, _ = await put_policy(ngsi_hub, {"level": "redacted"})
    assert status == 200
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    await post(ngsi_hub, [reading("gd-fcc2-203", "gas.h2s", "ppm", 25.0, at)])

    async def dead() -> list[Any]:
        return list(await ngsi_hub.hub.pool.fetch("SELECT entity_id, status, answer FROM feed_ngsi_dead"))

    rows = await eventually(dead, timeout=30, what="the refused Alert dead-lettered")
    assert rows[0]["status"] == 400
    assert "attribute not allowed" in rows[0]["answer"]
    assert rows[0]["entity_id"].startswith("urn:ngsi-ld:Alert:")

    async def drained() -> bool:
        return not await ngsi_hub.hub.pool.fetchval("SELECT count(*) FROM feed_ngsi_pending")

    await eventually(drained, what="the refused rows out of the queue")
