"""The feed's consumers run in one process at a time (`up --workers 2`, two replicas): the holder
of the feed's PostgreSQL advisory lock. Another process stands by (ready) and takes over within
seconds when the leader's session ends; each site's events reach FEED in the order of the
incident changes, across the handover too, and none is lost or doubled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.alarms.channel import ALARMS
from services.common.auth.keys import create_key
from services.common.bus.connection import connect_bus
from services.common.contracts.ids import derived_id
from services.feed.app import Feed
from services.feed.channel import FEED_CHANNEL
from services.feed.config import FeedConfig
from services.feed.leadership import LOCK
from services.feed.order import Versioned, read_versioned
from services.feed.service import ALARMS_DURABLE, INCIDENTS_DURABLE, FeedService
from services.hub.bootstrap import Endpoints, Hub
from services.incidents.channel import INCIDENT_CHANNEL, INCIDENTS
from tests.conftest import REPO, RunningHub, eventually, hub_config
from tests.integration.test_feed_service import (
    SITE,
    TENANT,
    feed_messages,
    post,
    put_policy,
    reading,
)

pytestmark = pytest.mark.integration
# A standby tries the lock every second; the leader notices a lost session within a second.
TAKEOVER_S = 5.0


# Messages in flight to the leader when its session ends are redelivered after the ack wait:
# a short one, so the test sees them consumed (the alarm engine's timers send some at any time).
FEED_CONFIG = FeedConfig(counts_grace_s=2, timer_poll_ms=100, batch_wait_ms=5, ack_wait_s=2.0)


@pytest.fixture
async def leader(nats_url: str, database_url: str) -> AsyncIterator[RunningHub]:
    """The whole hub, its feed started first: it takes the lock."""
    hub = Hub(hub_config(feed=FEED_CONFIG), REPO, Endpoints(nats_url, database_url))
    await hub.start()
    keys = {
        "gateway": await create_key(hub.pool, tenant=TENANT, role="gateway"),
        "admin": await create_key(hub.pool, tenant=TENANT, role="admin"),
    }
    async with aiohttp.ClientSession() as session:
        yield RunningHub(hub, hub.http_url, keys, session)
    await hub.stop()


@pytest.fixture
async def standby(nats_url: str, database_url: str, leader: RunningHub) -> AsyncIterator[Hub]:
    """Another process's feed: its own pool and NATS connection, the same durables and lock."""
    config = hub_config(feed=FEED_CONFIG)
    worker = Hub(config, REPO, Endpoints(nats_url, database_url), services=["feed"])
    await worker.start()
    yield worker
    await worker.stop()


def feed_of(hub: Hub) -> FeedService:
    return next(i for i in hub._running if isinstance(i, Feed)).service


async def drained(js: JetStreamContext) -> None:
    """Every message of the feed's durables delivered and acked (the ALARMS stream's last message
    may be an `alarmflood.` one, outside `feed-alarms`' filter: counted by the consumer, not the
    stream)."""

    async def done() -> bool:
        for stream, durable in ((INCIDENTS.name, INCIDENTS_DURABLE), (ALARMS.name, ALARMS_DURABLE)):
            info = await js.consumer_info(stream, durable)
            if info.num_pending or info.num_ack_pending:
                return False
        return True

    await eventually(done, what="the feed consumed INCIDENTS and ALARMS")


async def incident_changes(js: JetStreamContext) -> list[Versioned]:
    """The site's incident changes on INCIDENTS, in stream order."""
    sub = await js.subscribe(
        INCIDENT_CHANNEL.subject(TENANT, SITE, "*"),
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        ordered_consumer=True,
    )
    changes = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except TimeoutError:
                return changes
            changes.append(read_versioned(msg))
    finally:
        await sub.unsubscribe()


async def test_one_process_consumes_and_another_takes_over_keeping_the_sites_order(
    leader: RunningHub, standby: Hub, nats_url: str
) -> None:
    hub = leader
    first, second = feed_of(hub.hub), feed_of(standby)
    await asyncio.sleep(2.5)  # more than a standby's retry interval
    assert (first.leading, second.leading) == (True, False)
    assert (first.consuming, second.consuming) == (True, False)
    assert second.standing_by
    async with hub.session.get(standby.http_url + "/readyz") as response:
        assert response.status == 200, await response.text()  # standing by is not a fault

    nc = await connect_bus(nats_url, name="feed-leadership-test")
    js = nc.jetstream()
    try:
        status, body = await put_policy(hub, {"level": "redacted"})
        assert status == 200, body
        at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        await post(hub, [reading("gd-fcc2-203", "gas.h2s", "ppm", 25.0, at)])
        incidents = FEED_CHANNEL.subject(TENANT, SITE, "incident")
        await eventually(lambda: feed_messages(js, incidents), what="the incident on FEED by the leader")
        await post(hub, [reading("gd-fcc2-204", "gas.h2s", "ppm", 26.0, at + timedelta(seconds=20))])
        await drained(js)

        # The leader's session ends (its lock connection killed): the standby takes over.
        async with hub.hub.pool.acquire() as conn:
            killed = await conn.fetchval(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
                " AND classid = $1 AND objid = $2 AND granted",
                LOCK[0] & 0xFFFFFFFF,
                LOCK[1] & 0xFFFFFFFF,
            )
        assert killed
        handed_at = asyncio.get_running_loop().time()

        async def taken_over() -> bool:
            return second.leading and second.consuming and not first.leading

        await eventually(taken_over, timeout=TAKEOVER_S + 5, what="the standby taking over")
        assert asyncio.get_running_loop().time() - handed_at < TAKEOVER_S
        await post(
            hub,
            [
                reading("gd-cdu1-101", "gas.lel", "%LEL", 45.0, at + timedelta(seconds=30)),
                reading("gd-fcc2-203", "gas.h2s", "ppm", 2.0, at + timedelta(seconds=90)),
            ],
        )
        await drained(js)
        await asyncio.sleep(2.5)  # the old leader stays a standby: the lock is the other's now
        assert (first.leading, second.leading) == (False, True)

        changes = await incident_changes(js)
        events = await feed_messages(js, incidents)
        if len(events) < len(changes):  # the relay publishes just after the commit
            await asyncio.sleep(1.0)
            events = await feed_messages(js, incidents)
        assert len(changes) >= 6
        assert len({e["id"] for e in events}) == len(events)
        # Each FEED event is derived from one change (its id from the change's).
        by_event = {feed_id(c): c for c in changes}
        shared = [by_event[e["id"]] for e in events]
        # Every change of the site once across the handover, and each incident's in the order of
        # its versions.
        assert sorted(c.facts.event_id for c in shared) == sorted(c.facts.event_id for c in changes)
        for incident in {c.facts.incident_id for c in changes}:
            versions = [c.version for c in shared if c.facts.incident_id == incident]
            assert versions == sorted(versions), (incident, versions)
    finally:
        await nc.close()


def feed_id(change: Versioned) -> str:
    facts = change.facts
    at_ms = int(facts.at.timestamp() * 1000)
    return derived_id(at_ms, "feed", "incident", facts.tenant, facts.site, facts.event_id)
