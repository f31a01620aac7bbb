"""Ingest refuses readings older than its own `ingest.max_age_days`, not another service's setting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import msgspec
import pytest

from services.common.auth.keys import create_key
from services.hub.bootstrap import Endpoints, Hub
from services.ingest.config import IngestConfig
from services.store.config import StoreConfig
from tests.conftest import REPO, hub_config

pytestmark = pytest.mark.integration


@pytest.fixture
async def hub(nats_url: str, database_url: str) -> AsyncIterator[Hub]:
    # The store keeps 30 days; ingest is told to take 2.
    config = hub_config(ingest=IngestConfig(max_age_days=2), store=StoreConfig(retention_days=30))
    hub = Hub(config, REPO, Endpoints(nats_url, database_url), ("ingest",))
    await hub.start()
    yield hub
    await hub.stop()


async def test_a_reading_older_than_ingest_max_age_days_is_refused_naming_the_setting(hub: Hub) -> None:
    key = await create_key(hub.pool, tenant="ulsan-refining", role="gateway")
    now = datetime.now(UTC)

    def reading(age: timedelta) -> dict[str, object]:
        return {
            "site": "ulsan-refinery",
            "device": "gd-cdu1-101",
            "kind": "gas.h2s",
            "value": 1.5,
            "time": (now - age).isoformat(),
        }

    items = [reading(timedelta(days=1)), reading(timedelta(days=3))]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    url = f"{hub.http_url}/v1/observations"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=msgspec.json.encode(items), headers=headers) as resp,
    ):
        assert resp.status == 202
        body = await resp.json()
    assert len(body["accepted"]) == 1
    (refused,) = body["rejected"]
    assert (refused["index"], refused["field"]) == (1, "time")
    assert "ingest.max_age_days" in refused["detail"]
