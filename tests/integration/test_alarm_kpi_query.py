"""The KPI query on a real PostgreSQL: a scripted day of the alarm engine's rows gives the figures
worked out by hand, and nothing of another site, another tenant or outside the window counts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from services.alarms.domain.kpis import Status, compute
from services.alarms.domain.model import Priority
from services.alarms.kpi_query import load_kpi_window
from services.common.db import migrations
from services.common.db.pool import create_pool
from tests.integration.alarm_rows import (
    PointRow,
    TransitionRow,
    insert_flood,
    insert_points,
    insert_transitions,
)

pytestmark = pytest.mark.integration

SEOUL = ZoneInfo("Asia/Seoul")
TENANT, SITE = "ulsan-refining", "ulsan-refinery"
DAY_START = datetime(2026, 11, 22, tzinfo=SEOUL)
DAY_END = DAY_START + timedelta(days=1)


def at(hh: int, mm: int = 0, ss: int = 0, *, day: int = 22) -> datetime:
    return datetime(2026, 11, day, hh, mm, ss, tzinfo=SEOUL)


@pytest.fixture
async def alarm_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=4)
    await migrations.apply(pool, migrations.discover("alarms", "services.alarms"))
    yield pool
    await pool.close()


def point(device: str, rule: str, priority: str, *, tenant: str = TENANT, site: str = SITE) -> PointRow:
    return PointRow(tenant=tenant, site=site, device=device, rule_id=rule, priority=priority)


def rise(p: PointRow, when: datetime, old: str = "NORM", flags: tuple[str, ...] = ()) -> TransitionRow:
    return TransitionRow(p, when, old, "UNACK", True, activation=True, flags=flags)


def ack(
    p: PointRow, when: datetime, old: str = "UNACK", new: str = "ACKED", active: bool = True
) -> TransitionRow:
    return TransitionRow(p, when, old, new, active, action="ack", actor="kim")


def scripted_day() -> tuple[list[PointRow], list[TransitionRow]]:
    """One day at the refinery, local time (Asia/Seoul). Activations are marked (A)."""
    rows: list[TransitionRow] = []
    # gd-a H2S high (high): (A) 01:00, 05:00, 09:00, each acked a minute later; the first two
    # return at +10 min; the last is still ACKED at the day's end (since 09:00: not stale).
    gd_a = point("gd-a", "h2s-high", "high")
    for hh in (1, 5, 9):
        rows += [rise(gd_a, at(hh)), ack(gd_a, at(hh, 1))]
        if hh != 9:
            rows.append(TransitionRow(gd_a, at(hh, 10), "ACKED", "NORM", False, returned=True))
    # A pump chattering (low): (A) 6 times 40 s apart from 14:00:00, each back to normal 5 s
    # later unacknowledged (fleeting); the 6th activation is flagged chattering; acked at 14:10.
    vt_p = point("vt-p", "vibration-high", "low")
    for i in range(6):
        rose = at(14) + timedelta(seconds=40 * i)
        flags = ("chattering",) if i == 5 else ()
        rows.append(rise(vt_p, rose, "NORM" if i == 0 else "RTNUN", flags=flags))
        rows.append(
            TransitionRow(vt_p, rose + timedelta(seconds=5), "UNACK", "RTNUN", False, flags=("fleeting",))
        )
    rows.append(ack(vt_p, at(14, 10), "RTNUN", "NORM", False))
    # A burst (medium): (A) 11 detectors 20 s apart from 08:00:00 (.. 08:03:20), all still UNACK.
    burst = [point(f"gd-b{i + 1:02d}", "lel-high", "medium") for i in range(11)]
    rows += [rise(p, at(8) + timedelta(seconds=20 * i)) for i, p in enumerate(burst)]
    # Stale: a CO alarm (medium) active since the 20th, acked then: stale at the day's end.
    gd_old = point("gd-old", "co-high", "medium")
    rows += [rise(gd_old, at(10, day=20)), ack(gd_old, at(10, 5, day=20))]
    # Shelved: (A) 03:00, shelved at 03:02.
    gd_sh = point("gd-sh", "lel-high", "high")
    rows += [rise(gd_sh, at(3)), TransitionRow(gd_sh, at(3, 2), "UNACK", "SHLVD", True, action="shelve")]
    # Suppressed at 04:00; unsuppressed the next day, after the window (still DSUPR at its end).
    gd_su = point("gd-su", "lel-high", "high")
    rows += [
        TransitionRow(gd_su, at(4), "NORM", "DSUPR", False, action="suppress"),
        TransitionRow(gd_su, at(1, day=23), "DSUPR", "NORM", False, action="unsuppress"),
    ]
    # Out of service since the day before.
    gd_os = point("gd-os", "lel-high", "high")
    rows.append(TransitionRow(gd_os, at(16, day=21), "NORM", "OOSRV", False, action="out_of_service"))
    # An emergency: (A) 20:00, acked 20:01, back to normal 20:30.
    gd_e = point("gd-e", "h2s-high-high", "emergency")
    rows += [
        rise(gd_e, at(20)),
        ack(gd_e, at(20, 1)),
        TransitionRow(gd_e, at(20, 30), "ACKED", "NORM", False),
    ]
    # Outside the window: gd-a again at the next day's first instant (the end is excluded).
    rows.append(rise(gd_a, DAY_END, "NORM"))
    # Another site of the tenant and another tenant, busy the same day: none of it counts.
    east = point("gd-x", "lel-high", "low", site="ulsan-refinery-east")
    mipo = point("gd-y", "lel-high", "low", tenant="mipo-petrochem", site=SITE)
    rows += [rise(east, at(8, 1, i)) for i in range(3)]
    rows += [rise(mipo, at(8, 2, i)) for i in range(5)]
    points = [gd_a, vt_p, *burst, gd_old, gd_sh, gd_su, gd_os, gd_e, east, mipo]
    return points, rows


async def test_a_scripted_day_gives_the_hand_computed_figures(alarm_pool: asyncpg.Pool) -> None:
    points, rows = scripted_day()
    await insert_points(alarm_pool, points)
    await insert_transitions(alarm_pool, rows)
    # 10 minutes in flood; one the day before; another tenant's, still going.
    await insert_flood(alarm_pool, tenant=TENANT, site=SITE, began_at=at(8, 3, 20), ended_at=at(8, 13, 20))
    await insert_flood(
        alarm_pool, tenant=TENANT, site=SITE, began_at=at(8, day=21), ended_at=at(8, 30, day=21)
    )
    await insert_flood(alarm_pool, tenant="mipo-petrochem", site=SITE, began_at=at(8), ended_at=None)

    window = await load_kpi_window(alarm_pool, TENANT, SITE, DAY_START, DAY_END, zone=SEOUL)
    kpis = compute(window)

    # gd-a 3 + pump 6 + burst 11 + shelved 1 + emergency 1 = 22.
    assert kpis.activations == 22
    assert (kpis.per_day.average, kpis.per_day.peak) == (22, 22)
    # 22 / 24 = 0.917 an hour; the busiest hour is 08 with the burst's 11 (gd-a's 09:00 is in 09).
    assert (kpis.per_hour.average, kpis.per_hour.peak) == (0.917, 11)
    # 22 / 144 = 0.153 per 10 minutes; the burst's 11 in 08:00-08:10 is over the ceiling of 10.
    assert (kpis.per_10_minutes.average, kpis.per_10_minutes.peak) == (0.153, 11)
    assert kpis.per_10_minutes.peak_status is Status.OVER
    # 1 of 144 intervals above 10: 0.694 %; 10 of 1,440 minutes in flood: 0.694 %.
    assert kpis.intervals_above_10_pct.value == 0.694
    assert kpis.flood_time_pct.value == 0.694
    # The pump 6, gd-a 3, then the burst's first eight by id (ties by id): (6 + 3 + 8) / 22.
    assert [(f.alarm_id, f.activations) for f in kpis.top10] == [
        ("vt-p--vibration-high", 6),
        ("gd-a--h2s-high", 3),
        *((f"gd-b0{i}--lel-high", 1) for i in range(1, 9)),
    ]
    assert kpis.top10_share_pct.value == 77.273
    assert (kpis.chattering.value, kpis.fleeting.value) == (1, 1)
    # gd-old, active since the 20th; gd-a (since 09:00) and the burst (since 08:0x) are not.
    assert kpis.stale.value == 1
    # low 6 (27.273 %), medium 11 (50 %), high 3 + 1 = 4 (18.182 %), emergency 1 (4.545 %).
    assert [(p.priority, p.activations, p.share_pct) for p in kpis.priorities] == [
        (Priority.LOW, 6, 27.273),
        (Priority.MEDIUM, 11, 50.0),
        (Priority.HIGH, 4, 18.182),
        (Priority.EMERGENCY, 1, 4.545),
    ]
    assert (kpis.shelved, kpis.suppressed, kpis.out_of_service) == (1, 1, 1)


async def test_the_state_at_a_past_window_end_is_that_of_its_end(alarm_pool: asyncpg.Pool) -> None:
    points, rows = scripted_day()
    await insert_points(alarm_pool, points)
    await insert_transitions(alarm_pool, rows)

    # The morning only: at 06:00 gd-sh is shelved and gd-su suppressed; gd-old already stale; gd-a
    # rose at 01:00 and 05:00 and was back to normal at 05:10.
    window = await load_kpi_window(alarm_pool, TENANT, SITE, DAY_START, at(6), zone=SEOUL)
    kpis = compute(window)

    assert kpis.activations == 3  # gd-a 01:00 and 05:00, gd-sh 03:00
    assert (kpis.shelved, kpis.suppressed, kpis.out_of_service, kpis.stale.value) == (1, 1, 1, 1)
    assert (kpis.chattering.value, kpis.fleeting.value) == (0, 0)
