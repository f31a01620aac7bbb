"""`near` on a real PostgreSQL: nearest first through the GiST index, pages without gap or repeat
(ties included), the radius exact at its edge, and the plan an index walk rather than a sort of
every incident."""

from __future__ import annotations

import json
import math
import random
import re
from datetime import UTC, datetime, timedelta

import asyncpg

from services.incidents.domain.fusion import distance_m
from services.incidents.read_query import (
    NEAR_PLAN,
    IncidentQuery,
    build_list_sql,
    decode_cursor,
    list_incidents,
)

TENANT = "ulsan-refining"
CENTRE = (35.4778, 129.3554)
T0 = datetime(2026, 11, 22, tzinfo=UTC)


async def fill(pool: asyncpg.Pool, positions: list[tuple[str, str, float, float]]) -> None:
    await pool.executemany(
        "INSERT INTO incidents (tenant, id, site, type, status, severity, severity_rank, opened_at,"
        " updated_at, lat, lon, version, body) VALUES ($1, $2, $3, 'gas_release', 'open', 'Severe', 3,"
        " $4, $4, $5, $6, 1, $7::jsonb)",
        [
            (
                tenant,
                f"{n:026d}",
                "ulsan-refinery",
                T0 + timedelta(seconds=n),
                lat,
                lon,
                json.dumps({"id": f"{n:026d}"}),
            )
            for n, (tenant, _, lat, lon) in enumerate(positions)
        ],
    )


def scattered(count: int, seed: int = 1) -> list[tuple[str, str, float, float]]:
    rng = random.Random(seed)
    rows = []
    for n in range(count):
        tenant = TENANT if n % 5 else "mipo-petrochem"
        lat, lon = CENTRE[0] + rng.uniform(-0.05, 0.05), CENTRE[1] + rng.uniform(-0.05, 0.05)
        if n % 7 == 0:  # the same spot as another: ties broken by id
            lat, lon = CENTRE[0] + 0.01, CENTRE[1] + 0.01
        rows.append((tenant, "", round(lat, 6), round(lon, 6)))
    return rows


async def pages(pool: asyncpg.Pool, query: IncidentQuery) -> list[tuple[str, float]]:
    seen: list[tuple[str, float]] = []
    after = None
    while True:
        rows, cursor = await list_incidents(pool, query, after)
        seen += [(json.loads(r["body"])["id"], r["distance_m"]) for r in rows]
        if cursor is None:
            return seen
        after = decode_cursor(query, cursor)


async def test_pages_of_near_are_the_tenants_incidents_nearest_first(migrated_pool: asyncpg.Pool) -> None:
    positions = scattered(600)
    await fill(migrated_pool, positions)
    query = IncidentQuery(tenant=TENANT, sites=["ulsan-refinery"], near=CENTRE, limit=37)

    seen = await pages(migrated_pool, query)

    expected = sorted(
        (distance_m(CENTRE, (lat, lon)), f"{n:026d}")
        for n, (tenant, _, lat, lon) in enumerate(positions)
        if tenant == TENANT
    )
    assert [incident for incident, _ in seen] == [
        incident for _, incident in sorted(expected, key=lambda e: (round(e[0], 3), e[1]))
    ]
    for (_, metres), (want, _) in zip(seen, expected, strict=True):
        assert math.isclose(metres, want, abs_tol=0.01)


async def test_the_radius_keeps_exactly_those_within_it(migrated_pool: asyncpg.Pool) -> None:
    positions = scattered(400, seed=2)
    await fill(migrated_pool, positions)
    radius = 2_500.0
    query = IncidentQuery(tenant=TENANT, sites=["ulsan-refinery"], near=CENTRE, radius_m=radius, limit=50)

    seen = {incident for incident, _ in await pages(migrated_pool, query)}

    within = {
        f"{n:026d}"
        for n, (tenant, _, lat, lon) in enumerate(positions)
        if tenant == TENANT and distance_m(CENTRE, (lat, lon)) <= radius
    }
    assert seen == within and 0 < len(within) < 320


async def test_near_walks_the_index_instead_of_sorting_every_incident(migrated_pool: asyncpg.Pool) -> None:
    await fill(migrated_pool, scattered(5_000, seed=3))
    await migrated_pool.execute("ANALYZE incidents")
    for radius in (None, 5_000.0, 300.0):
        query = IncidentQuery(tenant=TENANT, sites=["ulsan-refinery"], near=CENTRE, radius_m=radius, limit=50)
        sql, params = build_list_sql(query, None)
        async with migrated_pool.acquire() as conn, conn.transaction():
            await conn.execute(NEAR_PLAN)
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN ANALYZE " + sql, *params))
        # The index walked in distance order (its `Order By`), stopping after the page: no
        # bitmap of every incident in the cube, no sort of them all.
        assert "Index Scan using incidents_near" in plan and "Order By" in plan, plan
        assert "Bitmap" not in plan, plan
        scan = re.search(r"Index Scan using incidents_near .*actual time=\S+ rows=(\d+)", plan)
        assert scan is not None, plan
        walked = int(scan[1])
        assert walked < 200, plan


async def test_an_incident_without_a_position_is_listed_but_never_near(migrated_pool: asyncpg.Pool) -> None:
    await fill(migrated_pool, [(TENANT, "", CENTRE[0], CENTRE[1])])
    await migrated_pool.execute(
        "INSERT INTO incidents (tenant, id, site, type, status, severity, severity_rank, opened_at,"
        " updated_at, version, body) VALUES ($1, 'FLOOD', 'ulsan-refinery', 'alarm_flood', 'open',"
        " 'Moderate', 2, $2, $2, 1, '{\"id\": \"FLOOD\"}')",
        TENANT,
        T0,
    )

    plain = await pages(migrated_pool, IncidentQuery(tenant=TENANT, sites=["ulsan-refinery"]))
    near = await pages(migrated_pool, IncidentQuery(tenant=TENANT, sites=["ulsan-refinery"], near=CENTRE))

    assert {incident for incident, _ in plain} == {"FLOOD", f"{0:026d}"}
    assert [incident for incident, _ in near] == [f"{0:026d}"]
