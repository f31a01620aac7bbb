"""Two feed workers on the same durables (as under `up --workers 2`): a policy set through one
worker's API is obeyed by whichever worker takes the next changes, timed from the PUT (policies
are read from PostgreSQL in each unit of work; no worker keeps a copy to refresh)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from services.common.bus.connection import connect_bus
from services.feed.channel import FEED, FEED_CHANNEL
from services.feed.config import FeedConfig
from services.hub.bootstrap import Endpoints, Hub
from services.incidents.channel import INCIDENTS
from tests.conftest import REPO, RunningHub, eventually, hub_config
from tests.integration.test_feed_service import (
    SITE,
    TENANT,
    caught_up,
    feed_hub,
    feed_messages,
    post,
    put_policy,
    reading,
)

__all__ = ["feed_hub"]  # the fixture, used by name
# How soon after the PUT the next incident change must be seen withheld by whichever worker
# takes it (both consumers' batches wait at most a few ms; the rest is the pipeline upstream).
WITHIN_S = 15.0


@pytest.fixture
async def second_worker(nats_url: str, database_url: str, feed_hub: RunningHub) -> AsyncIterator[Hub]:
    """Another process's feed: its own pool and NATS connection, the same durables."""
    config = hub_config(feed=FeedConfig(counts_grace_s=2, timer_poll_ms=100, batch_wait_ms=5))
    worker = Hub(config, REPO, Endpoints(nats_url, database_url), services=["feed"])
    await worker.start()
    yield worker
    await worker.stop()


async def test_none_put_through_one_worker_stops_the_flow_of_both_within_seconds(
    feed_hub: RunningHub, second_worker: Hub, nats_url: str
) -> None:
    hub = feed_hub
    nc = await connect_bus(nats_url, name="feed-workers-test")
    js = nc.jetstream()
    try:
        status, body = await put_policy(hub, {"level": "redacted"})
        assert status == 200, body
        at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        await post(hub, [reading("gd-fcc2-203", "gas.h2s", "ppm", 25.0, at)])

        async def shared() -> list[object]:
            return await feed_messages(js, FEED_CHANNEL.subject(TENANT, SITE, "incident"))

        await eventually(shared, what="the incident on FEED")
        await caught_up(js)

        put_at = time.monotonic()
        status, body = await put_policy(hub, {"level": "none"})
        assert status == 200 and body["version"] == 2
        before = (await js.stream_info(FEED.name)).state.last_seq
        changes = (await js.stream_info(INCIDENTS.name)).state.last_seq
        # Several changes (a second detector joins, others open incidents of their own), so
        # both workers' consumers are likely to be handed some of them.
        await post(
            hub,
            [
                reading("gd-fcc2-204", "gas.h2s", "ppm", 26.0, at + timedelta(seconds=20)),
                reading("gd-cdu1-101", "gas.lel", "%LEL", 45.0, at + timedelta(seconds=30)),
            ],
        )

        async def changed() -> bool:
            return (await js.stream_info(INCIDENTS.name)).state.last_seq > changes

        await eventually(changed, what="incident changes after the policy became none")
        await caught_up(js)
        elapsed = time.monotonic() - put_at
        assert (await js.stream_info(FEED.name)).state.last_seq == before
        assert elapsed < WITHIN_S, f"the next changes were consumed {elapsed:.1f} s after the PUT"
    finally:
        await nc.close()
