"""A batch of the alarm engine is one unit of work per site: a site another unit of work holds
does not hold back the batch's other sites, which commit meanwhile; the held one follows."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from services.alarms.domain.workset import Observation
from services.alarms.service import AlarmsService
from tests.conftest import RunningHub, eventually
from tests.integration.test_alarms_service import BASE, SITE, TENANT

OTHER_TENANT, OTHER_SITE, OTHER_DEVICE = "mipo-petrochem", "mipo-aromatics", "gd-btx-101"
DEVICE = "gd-cdu1-101"


def _alarms(running_hub: RunningHub) -> AlarmsService:
    running = running_hub.hub._running
    return next(i.service for i in running if isinstance(getattr(i, "service", None), AlarmsService))


def _lel(tenant: str, site: str, device: str, seconds: int, value: float) -> Observation:
    at = BASE + timedelta(seconds=seconds)
    return Observation(tenant, site, device, "gas.lel", f"{device}-{seconds}", at, value)


async def test_a_held_site_waits_while_the_other_sites_of_the_batch_commit(running_hub: RunningHub) -> None:
    service, pool = _alarms(running_hub), running_hub.hub.pool
    # First readings create both sites' rows and points.
    await service._evaluate(
        [[_lel(TENANT, SITE, DEVICE, 0, 1.0)], [_lel(OTHER_TENANT, OTHER_SITE, OTHER_DEVICE, 0, 1.0)]]
    )

    async def state(tenant: str, site: str, alarm_id: str) -> str | None:
        query = "SELECT state FROM alarm_points WHERE tenant = $1 AND site = $2 AND alarm_id = $3"
        return await pool.fetchval(query, tenant, site, alarm_id)  # type: ignore[no-any-return]

    mine, other = f"{DEVICE}--lel-high-high", f"{OTHER_DEVICE}--lel-high-high"
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT 1 FROM alarm_sites WHERE tenant = $1 AND site = $2 FOR UPDATE", TENANT, SITE
        )
        batch = asyncio.create_task(
            service._evaluate(
                [
                    [_lel(TENANT, SITE, DEVICE, 1, 45.0)],
                    [_lel(OTHER_TENANT, OTHER_SITE, OTHER_DEVICE, 1, 45.0)],
                ]
            )
        )

        async def other_raised() -> bool:
            return await state(OTHER_TENANT, OTHER_SITE, other) == "UNACK"

        await eventually(other_raised, what="the free site's alarm raised")
        assert not batch.done()
        assert await state(TENANT, SITE, mine) == "NORM"
    await asyncio.wait_for(batch, 10)
    assert await state(TENANT, SITE, mine) == "UNACK"
