import asyncio
from datetime import UTC, datetime
import pytest
from services.common.bus.connection import connect_bus
from services.common.bus.consumer import ConsumerSpec, DurableConsumer
from services.common.bus.streams import OBSERVATIONS, ensure_streams, hub_streams
from services.common.settings import BusConfig
from services.common.db import migrations
from services.common.db.pool import create_pool
from services.hub.bootstrap import all_migrations
from services.store.partitions import ensure_partitions

async def h(items):
    return ()

async def test_ackwait_update(nats_url):
    nc = await connect_bus(nats_url, name="p")
    js = nc.jetstream()
    await ensure_streams(js, hub_streams(BusConfig()))
    for aw in (2.0, 5.0):
        c = DurableConsumer(js, ConsumerSpec(OBSERVATIONS, "x", "obs.>", ack_wait=aw), lambda m: m.data, h)
        await c.start()
        info = await js.consumer_info(OBSERVATIONS, "x")
        print("ack_wait", aw, info.config.ack_wait)
        await c.stop()
    await nc.close()

async def test_concurrent_partitions(database_url):
    pools = [await create_pool(database_url, min_size=1, max_size=1) for _ in range(6)]
    await migrations.apply(pools[0], all_migrations())
    today = datetime.now(UTC).date()
    res = await asyncio.gather(*(ensure_partitions(p, today) for p in pools), return_exceptions=True)
    print("results", res)
    n = await pools[0].fetchval("SELECT count(*) FROM pg_inherits WHERE inhparent = 'observations'::regclass")
    print("partitions", n)
    for p in pools: await p.close()
