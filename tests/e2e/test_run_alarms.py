"""`safetyhub run alarms` as its own process beside `run ingest` and `run store`, as Kubernetes
runs them: a reading posted to the ingest process raises the alarms the shipped rules say, the
alarm process publishes them on ALARMS and serves them, and its /readyz and /metrics cover it."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.alarms.adapters.decode import read_transition
from services.alarms.channel import ALARM_CHANNEL
from services.common.auth.keys import create_key
from services.common.bus.connection import connect_bus
from tests.conftest import eventually
from tests.e2e.test_run_services import _ready, service
from tests.openapi import assert_matches

pytestmark = pytest.mark.e2e

TENANT, SITE, DEVICE = "ulsan-refining", "ulsan-refinery", "gd-fcc2-201"
# 45 %LEL: past lel-high (20, on-delay 2 s: a timer) and lel-high-high (40, at once).
HIGH, HIGH_HIGH = f"{DEVICE}--lel-high", f"{DEVICE}--lel-high-high"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def _published(nats_url: str, alarm_id: str) -> list[str]:
    """The new states of the alarm's transitions on the ALARMS stream."""
    nc = await connect_bus(nats_url, name="run-alarms-test")
    try:
        sub = await nc.jetstream().subscribe(
            ALARM_CHANNEL.subject(TENANT, SITE, alarm_id),
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        seen = [read_transition(await sub.next_msg(timeout=10))[0].new.value]
        with contextlib.suppress(TimeoutError):
            while True:
                seen.append(read_transition(await sub.next_msg(timeout=0.5))[0].new.value)
        return seen
    finally:
        await nc.close()


async def _keys(database_url: str) -> tuple[str, str]:
    """A gateway key and a viewer key of the tenant."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        return (
            await create_key(pool, tenant=TENANT, role="gateway"),
            await create_key(pool, tenant=TENANT, role="viewer"),
        )
    finally:
        await pool.close()


async def _post_reading(session: aiohttp.ClientSession, ingest_url: str, key: str, *, value: float) -> None:
    reading = {"site": SITE, "device": DEVICE, "kind": "gas.lel", "value": value, "unit": "%LEL"}
    reading["time"] = datetime.now(UTC).isoformat()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    body = io.BytesIO(msgspec.json.encode([reading]))
    async with session.post(ingest_url + "/v1/observations", data=body, headers=headers) as resp:
        assert resp.status == 202


def _samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value of a Prometheus text scrape."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


async def test_run_alarms_alone_raises_publishes_and_serves_an_alarm_from_a_posted_reading(
    reachable_dir: Path, nats_url: str, database_url: str, session: aiohttp.ClientSession
) -> None:
    workdir = reachable_dir
    with (
        service("ingest", workdir, nats_url, database_url) as (ingest_url, ingest),
        service("store", workdir, nats_url, database_url) as (store_url, store),
        service("alarms", workdir, nats_url, database_url) as (alarms_url, alarms),
    ):
        for url, proc, name in (
            (ingest_url, ingest, "ingest"),
            (store_url, store, "store"),
            (alarms_url, alarms, "alarms"),
        ):
            await eventually(lambda u=url, p=proc: _ready(session, u, p), timeout=60, what=f"{name} ready")
        async with session.get(alarms_url + "/readyz") as resp:
            checks = (await resp.json())["checks"]
        assert {"alarms.alarm_rules", "alarms.alarm_consumer"} <= set(checks)

        gateway, viewer = await _keys(database_url)
        await _post_reading(session, ingest_url, gateway, value=45.0)

        read = {"Authorization": f"Bearer {viewer}"}

        async def raised() -> dict[str, Any] | None:
            async with session.get(
                alarms_url + "/v1/alarms", params={"site": SITE, "state": "active"}, headers=read
            ) as resp:
                assert resp.status == 200
                page: dict[str, Any] = await resp.json()
            ids = {item["id"] for item in page["items"]}
            return page if {HIGH, HIGH_HIGH} <= ids else None

        page = await eventually(raised, timeout=30, what="both LEL alarms in GET /v1/alarms")
        assert_matches("AlarmPage", page)
        by_id = {item["id"]: item for item in page["items"]}
        assert by_id[HIGH_HIGH]["state"] == "UNACK" and by_id[HIGH_HIGH]["priority"] == "emergency"
        assert by_id[HIGH]["state"] == "UNACK" and by_id[HIGH]["priority"] == "high"
        # Most urgent first, as an operator's list.
        urgency = ["emergency", "high", "medium", "low"]
        ranks = [urgency.index(item["priority"]) for item in page["items"]]
        assert ranks == sorted(ranks)

        assert await _published(nats_url, HIGH_HIGH) == ["UNACK"]
        assert await _published(nats_url, HIGH) == ["UNACK"]

        # The alarm process's metrics: its work, and the live figures of the site, which agree
        # with what the API shows (the group's confirmed alarm included, if it was raised).
        site = f'site="{SITE}",tenant="{TENANT}"'
        items = page["items"]

        async def counted() -> dict[str, float] | None:
            async with session.get(alarms_url + "/metrics") as resp:
                samples = _samples(await resp.text())
            live = samples.get(f"safetyhub_alarms_site_activations_last_10m{{{site}}}", 0.0)
            return samples if live == len(items) else None

        samples = await eventually(counted, timeout=30, what="the alarm process's live figures")
        assert samples["safetyhub_alarms_observations_evaluated_total"] >= 1
        assert samples['safetyhub_alarms_transitions_total{state="UNACK"}'] == len(items)
        emergency = sum(1 for item in items if item["priority"] == "emergency")
        assert samples[f'safetyhub_alarms_site_active{{priority="emergency",{site}}}'] == emergency
        assert samples[f'safetyhub_alarms_site_active{{priority="high",{site}}}'] == len(items) - emergency
        assert samples[f"safetyhub_alarms_site_unacknowledged{{{site}}}"] == len(items)
        assert samples[f"safetyhub_alarms_site_in_flood{{{site}}}"] == 0
        assert 'safetyhub_alarms_active{priority="emergency"}' in samples

        # The alarm process serves the alarm routes only.
        async with session.get(alarms_url + "/v1/observations", headers=read) as resp:
            assert resp.status == 404
    assert ingest.returncode == 0 and store.returncode == 0 and alarms.returncode == 0
