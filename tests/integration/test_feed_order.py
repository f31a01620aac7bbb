"""Each incident's events on FEED in the order of its versions, across a lost leader too.

Two feed workers (each its own pool and NATS connection) on the same durables; incident changes
published on INCIDENTS as the incidents service does, each with the incident's version. The
leader holds a batch, delivered and unacked, when its lock session is killed; newer changes of
the same incidents follow. What it held comes back to the new leader before them: FEED has every
change of every incident once, in version order. And a change older than what FEED already has of
its incident, arriving late, is dropped and counted, never published after the newer state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import nats
import pytest
from nats.js import JetStreamContext

from services.alarms.adapters.wire import set_timestamp
from services.common.bus.consumer import Rejection
from services.common.bus.streams import ensure_streams
from services.common.contracts import IncidentChange
from services.common.contracts.cloudevents import MSG_ID
from services.common.db.pool import create_pool
from services.common.outbox.unit_of_work import UnitOfWork
from services.common.sites.registry import SiteRegistry
from services.feed import metrics, repository
from services.feed.config import FeedConfig
from services.feed.domain.policy import Level, SharingPolicy
from services.feed.domain.projection import rfc3339
from services.feed.leadership import LOCK
from services.feed.order import Versioned
from services.feed.service import FeedService
from services.incidents.channel import INCIDENT_CHANNEL
from tests.conftest import DEMO_SITES, eventually, hub_streams
from tests.integration.test_feed_service import SITE, TENANT, feed_messages

pytestmark = pytest.mark.integration
# A long ack wait: what the old leader held must come back because it gave it back, not because
# JetStream gave up waiting for its ack.
CONFIG = FeedConfig(batch_wait_ms=5, ack_wait_s=30.0, timer_poll_ms=100)
INCIDENTS = [f"01KB0RDER{n:017d}" for n in range(20)]
BASE = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
STATUSES = {1: 1, 2: 2, 3: 3, 4: 4, 5: 4, 6: 5}  # version -> IncidentStatus (resolved at 4, closed at 6)
CHANGES = {1: "opened", 2: "acknowledged", 3: "dispatched", 4: "resolved", 5: "commented", 6: "closed"}


class HeldFeed(FeedService):
    """A feed worker whose next incident batch waits, delivered and unacked, until let go."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hold_next = False
        self.holding = asyncio.Event()
        self.let_go = asyncio.Event()

    async def _share_incidents(self, items: list[Versioned], uow: UnitOfWork) -> list[Rejection]:
        if self.hold_next:
            self.hold_next = False
            self.holding.set()
            await self.let_go.wait()
        return list(await super()._share_incidents(items, uow))


@dataclass
class Worker:
    service: HeldFeed
    pool: asyncpg.Pool
    nc: nats.NATS


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js, hub_streams())
    yield js
    await nc.close()


@pytest.fixture
async def workers(
    migrated_pool: asyncpg.Pool, database_url: str, nats_url: str, bus: JetStreamContext
) -> AsyncIterator[list[Worker]]:
    """Two feed workers, the first started first (it leads), under a `redacted` policy."""
    async with migrated_pool.acquire() as conn, conn.transaction():
        await repository.set_policy(
            conn, TENANT, SITE, SharingPolicy(level=Level.REDACTED), source="api", set_by="test"
        )
    registry = SiteRegistry.load([DEMO_SITES])
    started: list[Worker] = []
    try:
        for _ in range(2):
            pool = await create_pool(database_url, min_size=1, max_size=4)
            nc = await nats.connect(nats_url)
            service = HeldFeed(pool, (nc, nc.jetstream()), CONFIG, lambda: registry)
            started.append(Worker(service, pool, nc))
            await service.start()
            if len(started) == 1:
                await eventually(lambda s=service: _true(s.consuming), what="the first worker consuming")
        yield started
    finally:
        for worker in started:
            await worker.service.stop()
            await worker.nc.close()
            await worker.pool.close()


def change(incident: str, version: int) -> tuple[str, bytes, dict[str, str]]:
    """Change `version` of `incident` as the incidents service publishes it."""
    message = IncidentChange()
    env = message.envelope
    env.id = f"{incident}-v{version}"
    env.type = f"org.safetyhub.incident.{CHANGES[version]}.v1"
    env.tenant, env.site = TENANT, SITE
    set_timestamp(env.time, at(version))
    message.incident_id = incident
    message.entry.id, message.entry.change = env.id, CHANGES[version]
    set_timestamp(message.entry.time, at(version))
    message.entry.status = STATUSES[version]  # type: ignore[assignment]
    out = message.incident
    out.incident_id = incident
    out.type = 1  # type: ignore[assignment]  # gas release
    out.status = STATUSES[version]  # type: ignore[assignment]
    out.severity = 4  # type: ignore[assignment]
    set_timestamp(out.opened_at, at(1))
    set_timestamp(out.updated_at, at(version))
    out.zones.append("cdu-1")
    out.version = version
    subject = INCIDENT_CHANNEL.subject(TENANT, SITE, incident)
    return subject, message.SerializeToString(), {MSG_ID: env.id}


def at(version: int) -> datetime:
    return BASE + timedelta(minutes=version)


async def publish(js: JetStreamContext, versions: range, incidents: list[str] = INCIDENTS) -> None:
    """Each version in turn of every incident (the stream's order: an incident's older first)."""
    for version in versions:
        for incident in incidents:
            subject, payload, headers = change(incident, version)
            await js.publish(subject, payload, headers=headers)


async def on_feed(js: JetStreamContext) -> dict[str, list[int]]:
    """Each incident's versions as FEED has them, in FEED's order."""
    times = {rfc3339(at(v)): v for v in CHANGES}
    seen: dict[str, list[int]] = {}
    for event in await feed_messages(js, f"feed.{TENANT}.{SITE}.incident"):
        seen.setdefault(event["data"]["id"], []).append(times[event["time"]])
    return seen


async def test_the_batch_a_lost_leader_held_reaches_feed_before_the_newer_changes(
    workers: list[Worker], bus: JetStreamContext, migrated_pool: asyncpg.Pool
) -> None:
    first, second = workers[0].service, workers[1].service
    assert (first.leading, second.leading) == (True, False)
    await publish(bus, range(1, 2))

    async def opened() -> bool:
        return sum(map(len, (await on_feed(bus)).values())) == len(INCIDENTS)

    await eventually(opened, what="every incident opened on FEED")

    # The leader takes the next batch and holds it; the rest of the changes wait in its buffer.
    first.hold_next = True
    await publish(bus, range(2, 4))
    await asyncio.wait_for(first.holding.wait(), 10)
    async with migrated_pool.acquire() as conn:
        killed = await conn.fetchval(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
            " AND classid = $1 AND objid = $2 AND granted",
            LOCK[0] & 0xFFFFFFFF,
            LOCK[1] & 0xFFFFFFFF,
        )
    assert killed
    await eventually(lambda: _true(second.leading), what="the standby taking the lock")
    # Newer changes of the same incidents while the old leader still holds its batch.
    await publish(bus, range(4, 7))
    dropped = metrics.OUT_OF_ORDER._value.get()
    first.let_go.set()

    async def all_there() -> dict[str, list[int]] | None:
        seen = await on_feed(bus)
        return seen if sum(map(len, seen.values())) == len(INCIDENTS) * len(CHANGES) else None

    seen = await eventually(all_there, timeout=20, what="every change on FEED")
    assert second.consuming and not first.leading
    # Every change of every incident once, in the order of its versions: the held batch came back
    # to the new leader before the changes published after it.
    assert seen == {incident: list(CHANGES) for incident in INCIDENTS}
    assert metrics.OUT_OF_ORDER._value.get() == dropped


async def test_a_change_older_than_what_feed_has_of_its_incident_is_dropped_and_counted(
    workers: list[Worker], bus: JetStreamContext, migrated_pool: asyncpg.Pool
) -> None:
    incidents = INCIDENTS[:2]
    dropped = metrics.OUT_OF_ORDER._value.get()
    # Version 4 (resolved) is on FEED when version 2 (acknowledged) arrives, late.
    await publish(bus, range(4, 5), incidents)

    async def resolved() -> bool:
        return await on_feed(bus) == {i: [4] for i in incidents}

    await eventually(resolved, what="the resolved incidents on FEED")
    await publish(bus, range(2, 3), incidents)

    async def counted() -> bool:
        return bool(metrics.OUT_OF_ORDER._value.get() == dropped + len(incidents))

    await eventually(counted, what="the late changes counted as dropped")
    await publish(bus, range(5, 6), incidents)  # a newer one still leaves

    async def commented() -> bool:
        return await on_feed(bus) == {i: [4, 5] for i in incidents}

    await eventually(commented, what="the newer change on FEED after the dropped one")
    versions = await migrated_pool.fetch("SELECT incident_id, version FROM feed_incident_versions")
    assert {(r["incident_id"], r["version"]) for r in versions} == {(i, 5) for i in incidents}


async def _true(value: bool) -> bool:
    return value
