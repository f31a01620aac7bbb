"""While NATS is unreachable, ingest answers 503 with Retry-After and accepts nothing."""

from __future__ import annotations

import io
from pathlib import Path

import aiohttp
import msgspec
import pytest

from services.common.auth.keys import create_key
from services.common.embedded import EmbeddedNats
from services.hub.bootstrap import Endpoints, Hub
from tests.conftest import REPO, eventually, hub_config

pytestmark = pytest.mark.integration


async def test_503_while_the_bus_is_down_then_recovery(reachable_dir: Path, database_url: str) -> None:
    # A nats-server of this test alone, so it can be stopped and started again on the same store.
    nats_dir = reachable_dir
    private_nats = EmbeddedNats(nats_dir)
    await private_nats.start()
    hub = Hub(hub_config(), REPO, Endpoints(private_nats.url, database_url))
    await hub.start()
    try:
        key = await create_key(hub.pool, tenant="ulsan-refining", role="gateway")
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        body = msgspec.json.encode(
            [
                {
                    "id": f"u-{n}",
                    "site": "ulsan-refinery",
                    "device": "gd-cdu1-101",
                    "kind": "gas.h2s",
                    "value": 1.0,
                }
                for n in range(50)
            ]
        )
        port = private_nats.url.rsplit(":", 1)[1]
        async with aiohttp.ClientSession() as session:
            await private_nats.stop()
            async with session.post(
                hub.http_url + "/v1/observations", data=io.BytesIO(body), headers=headers
            ) as resp:
                assert resp.status == 503
                assert resp.headers["Content-Type"].startswith("application/problem+json")
                assert int(resp.headers["Retry-After"]) > 0
                problem = await resp.json(content_type=None)
                assert "nothing of this request was accepted" in problem["detail"]
            async with session.get(hub.http_url + "/readyz") as resp:
                assert resp.status == 503
            assert await hub.pool.fetchval("SELECT count(*) FROM observations") == 0

            # The same server comes back on the same port: the hub reconnects and the retry lands.
            private_nats = EmbeddedNats(nats_dir, port=int(port))
            await private_nats.start()

            async def accepted() -> bool:
                async with session.post(
                    hub.http_url + "/v1/observations", data=io.BytesIO(body), headers=headers
                ) as resp:
                    return resp.status == 202

            await eventually(accepted, timeout=20, what="ingest to accept again after NATS returned")

            async def all_stored() -> bool:
                return await hub.pool.fetchval("SELECT count(*) FROM observations") == 50

            await eventually(all_stored, timeout=20, what="the retried batch in the store, once")
    finally:
        await hub.stop()
        await private_nats.stop()
