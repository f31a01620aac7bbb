"""The live alarm figures on a real PostgreSQL: what the live view and /metrics show per site
(active alarms by priority, unacknowledged, hidden, activations of the last 10 minutes and hour,
chattering, flood) match the alarm tables, and nothing of another site or tenant leaks in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import REGISTRY

from services.alarms.live import LiveFigures, SiteFigures, read_figures
from services.common.db import migrations
from services.common.db.pool import create_pool
from tests.conftest import eventually
from tests.integration.alarm_rows import (
    PointRow,
    TransitionRow,
    insert_flood,
    insert_points,
    insert_transitions,
)

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
TENANT, SITE = "ulsan-refining", "ulsan-refinery"
OTHER_TENANT = "mipo-petrochem"


@pytest.fixture
async def alarm_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=4)
    await migrations.apply(pool, migrations.discover("alarms", "services.alarms"))
    yield pool
    await pool.close()


def ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def rise(p: PointRow, minutes_ago: float, flags: tuple[str, ...] = ()) -> TransitionRow:
    return TransitionRow(p, ago(minutes_ago), "NORM", "UNACK", True, activation=True, flags=flags)


async def scripted(pool: asyncpg.Pool) -> None:
    h2s = PointRow(TENANT, SITE, "gd-a", "h2s-high", "high", state="UNACK", active=True)
    lel = PointRow(TENANT, SITE, "gd-b", "lel-high-high", "emergency", state="ACKED", active=True)
    pump = PointRow(TENANT, SITE, "vt-p", "vibration-high", "low", state="RTNUN")
    shelved = PointRow(TENANT, SITE, "gd-c", "h2s-high", "high", state="SHLVD", active=True)
    out = PointRow(TENANT, SITE, "gd-d", "lel-high", "high", state="OOSRV")
    quiet = PointRow(TENANT, SITE, "gd-e", "lel-high", "high")
    # The same site id in another tenant: its own figures, never added to the first.
    theirs = PointRow(OTHER_TENANT, SITE, "gd-a", "h2s-high", "high", state="UNACK", active=True)
    await insert_points(pool, [h2s, lel, pump, shelved, out, quiet, theirs])
    await insert_transitions(
        pool,
        [
            rise(h2s, 2),  # last 10 min and last hour
            rise(lel, 9.9),  # last 10 min and last hour
            rise(pump, 30, flags=("chattering",)),  # last hour, chattering
            TransitionRow(pump, ago(29), "UNACK", "RTNUN", False, flags=("chattering",)),
            rise(pump, 61),  # before the hour
            rise(shelved, 120, flags=("chattering",)),  # before the hour: not chattering now
            TransitionRow(shelved, ago(1), "UNACK", "SHLVD", True, action="shelve", actor="kim"),
            rise(theirs, 1),
        ],
    )
    await pool.executemany(
        "INSERT INTO alarm_sites (tenant, site) VALUES ($1, $2)", [(TENANT, SITE), (OTHER_TENANT, SITE)]
    )
    await insert_flood(pool, tenant=TENANT, site=SITE, began_at=ago(5), ended_at=None)
    await insert_flood(pool, tenant=OTHER_TENANT, site=SITE, began_at=ago(50), ended_at=ago(40))


async def test_the_figures_of_each_site_match_its_rows(alarm_pool: asyncpg.Pool) -> None:
    await scripted(alarm_pool)
    figures = await read_figures(alarm_pool, NOW)
    assert figures == [
        SiteFigures(
            OTHER_TENANT, SITE, active={"high": 1}, unacknowledged=1, last_10m=1, last_1h=1, in_flood=False
        ),
        SiteFigures(
            TENANT,
            SITE,
            active={"high": 1, "emergency": 1, "low": 1},
            unacknowledged=2,  # UNACK and RTNUN; the ACKED one is active but acknowledged
            hidden=2,  # shelved and out of service: not shown active
            last_10m=2,
            last_1h=3,
            chattering=1,
            in_flood=True,
        ),
    ]


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_the_gauges_carry_the_figures_and_a_site_gone_reads_zero(alarm_pool: asyncpg.Pool) -> None:
    await scripted(alarm_pool)
    live = LiveFigures(alarm_pool)
    await live.refresh(NOW)
    ours = {"tenant": TENANT, "site": SITE}
    assert sample("safetyhub_alarms_site_active", **ours, priority="emergency") == 1
    assert sample("safetyhub_alarms_site_active", **ours, priority="medium") == 0
    assert sample("safetyhub_alarms_site_unacknowledged", **ours) == 2
    assert sample("safetyhub_alarms_site_hidden", **ours) == 2
    assert sample("safetyhub_alarms_site_activations_last_10m", **ours) == 2
    assert sample("safetyhub_alarms_site_activations_last_1h", **ours) == 3
    assert sample("safetyhub_alarms_site_chattering_last_1h", **ours) == 1
    assert sample("safetyhub_alarms_site_in_flood", **ours) == 1

    # An hour on, with the other tenant's rows gone: the recent figures fall to zero, and a site
    # no longer in the tables shows zeros rather than its last figures.
    await alarm_pool.execute("DELETE FROM alarm_points WHERE tenant = $1", OTHER_TENANT)
    await alarm_pool.execute("DELETE FROM alarm_sites WHERE tenant = $1", OTHER_TENANT)
    await live.refresh(NOW + timedelta(hours=1))
    assert sample("safetyhub_alarms_site_activations_last_10m", **ours) == 0
    assert sample("safetyhub_alarms_site_activations_last_1h", **ours) == 0
    assert sample("safetyhub_alarms_site_in_flood", **ours) == 1  # still open
    theirs = {"tenant": OTHER_TENANT, "site": SITE}
    assert sample("safetyhub_alarms_site_active", **theirs, priority="high") == 0
    assert sample("safetyhub_alarms_site_unacknowledged", **theirs) == 0


async def test_started_it_keeps_the_gauges_current_and_stops_promptly(alarm_pool: asyncpg.Pool) -> None:
    site = {"tenant": TENANT, "site": "loop-site"}
    pump = PointRow(TENANT, "loop-site", "vt-p", "vibration-high", "low", state="UNACK", active=True)
    await insert_points(alarm_pool, [pump])
    live = LiveFigures(alarm_pool, every_s=0.05)
    live.start()
    try:

        async def unacknowledged(n: float) -> bool | None:
            return True if sample("safetyhub_alarms_site_unacknowledged", **site) == n else None

        await eventually(lambda: unacknowledged(1), timeout=10, what="the first figures")
        await alarm_pool.execute("UPDATE alarm_points SET state = 'ACKED' WHERE site = 'loop-site'")
        await eventually(lambda: unacknowledged(0), timeout=10, what="the acknowledgement counted")
    finally:
        started = asyncio.get_running_loop().time()
        await live.stop()
    assert asyncio.get_running_loop().time() - started < 2.5
