"""While NATS is unreachable, ingest answers 503 with Retry-After and accepts nothing."""

from __future__ import annotations

import io
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import msgspec
import nats
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


async def test_a_503_while_the_bus_is_frozen_says_the_request_may_have_been_stored(
    reachable_dir: Path, database_url: str
) -> None:
    # A frozen server (SIGSTOP) keeps the connection open: the publish is sent, no acknowledgement
    # comes, and when the server resumes it stores what it was sent. The 503 must not claim that
    # nothing was accepted, and a retry after the resume must store each observation once.
    private_nats = EmbeddedNats(reachable_dir)
    await private_nats.start()
    pid = private_nats.pid
    assert pid is not None
    hub = Hub(hub_config(), REPO, Endpoints(private_nats.url, database_url))
    await hub.start()
    frozen = False
    sent = datetime.now(UTC)
    try:
        key = await create_key(hub.pool, tenant="ulsan-refining", role="gateway")
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        body = msgspec.json.encode(
            [
                {
                    "id": f"frozen-{n}",
                    "site": "ulsan-refinery",
                    "device": ("gd-cdu1-101", "gd-cdu1-102")[n % 2],
                    "kind": "gas.h2s",
                    "value": float(n),
                    "time": (sent - timedelta(seconds=n)).isoformat(),
                }
                for n in range(20)
            ]
            # With an id but no time: stamped on arrival, so the retry has another time; the
            # stream drops it as a duplicate within its window all the same.
            + [
                {"id": f"untimed-{n}", "site": "ulsan-refinery", "device": "gd-cdu1-103",
                 "kind": "gas.co", "value": float(n)}
                for n in range(6)
            ]
        )
        async with aiohttp.ClientSession() as session:
            os.kill(pid, signal.SIGSTOP)
            frozen = True
            async with session.post(
                hub.http_url + "/v1/observations", data=io.BytesIO(body), headers=headers
            ) as resp:
                assert resp.status == 503
                assert int(resp.headers["Retry-After"]) > 0
                problem = await resp.json(content_type=None)
            assert "nothing of this request was accepted" not in problem["detail"]
            assert "may or may not have been stored" in problem["detail"]
            assert "safe for items that carry their time" in problem["detail"]
            os.kill(pid, signal.SIGCONT)
            frozen = False

            # What the frozen server was sent is stored after it resumes.
            async def stored(expected: int) -> bool:
                return await hub.pool.fetchval("SELECT count(*) FROM observations") == expected

            await eventually(lambda: stored(26), timeout=20, what="the frozen request stored after resume")
            async with session.post(
                hub.http_url + "/v1/observations", data=io.BytesIO(body), headers=headers
            ) as resp:
                assert resp.status == 202
            await eventually(
                lambda: _store_caught_up(private_nats.url), timeout=20, what="the retry processed"
            )
            rows = await hub.pool.fetch("SELECT id, count(*) AS n FROM observations GROUP BY id")
            assert len(rows) == 26 and all(row["n"] == 1 for row in rows)
    finally:
        if frozen:
            os.kill(pid, signal.SIGCONT)
        await hub.stop()
        await private_nats.stop()


async def _store_caught_up(nats_url: str) -> bool:
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().consumer_info("OBSERVATIONS", "store")
    finally:
        await nc.close()
    return info.num_pending == 0 and info.num_ack_pending == 0
