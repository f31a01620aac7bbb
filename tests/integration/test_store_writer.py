"""The observation writer and daily partitions against a real PostgreSQL.

Rows are made the way the store makes them: an observation encoded by ingest (`to_message`), then
decoded by the store's `observation_rows`.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest
from nats.aio.msg import Msg

from services.common.db.pool import create_pool
from services.ingest.domain.contract import BoxIn, ObservationIn
from services.ingest.encode import to_message
from services.store.partitions import ensure_partitions, partition_name
from services.store.rows import Row, observation_rows
from services.store.writer import ObservationWriter

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = NOW.date()


@pytest.fixture
def pool(migrated_pool: asyncpg.Pool) -> asyncpg.Pool:
    return migrated_pool


def row(n: int, *, at: datetime = NOW, device: str = "gd-101", **fields: object) -> Row:
    item = ObservationIn(
        site="refinery", device=device, kind="gas.h2s", id=f"obs-{n:05d}", time=at, value=float(n), **fields
    )
    return row_of(item, received=at + timedelta(seconds=1))


def row_of(item: ObservationIn, *, received: datetime = NOW, tenant: str = "acme") -> Row:
    out = to_message(item, tenant=tenant, source="test", received=received)
    # The message as the consumer would receive it; observation_rows reads subject and data only.
    msg = Msg(_client=None, subject=out.subject, data=out.payload, headers=out.headers)
    (only,) = observation_rows(msg)
    return only


async def partitions(pool: asyncpg.Pool) -> set[str]:
    names = await pool.fetch(
        "SELECT inhrelid::regclass::text AS name FROM pg_inherits WHERE inhparent = 'observations'::regclass"
    )
    return {r["name"] for r in names}


async def stored(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT *, tableoid::regclass::text AS part FROM observations ORDER BY id")


async def test_ensure_partitions_prepares_a_week_back_to_three_days_ahead_once(pool: asyncpg.Pool) -> None:
    created = await ensure_partitions(pool, TODAY)

    names = await partitions(pool)
    expected = {partition_name(TODAY + timedelta(days=d)) for d in range(-7, 4)}
    assert created == len(expected)
    assert names == expected | {"observations_default"}

    assert await ensure_partitions(pool, TODAY) == 0
    assert await partitions(pool) == names


async def test_workers_starting_together_create_each_partition_once(
    database_url: str, pool: asyncpg.Pool
) -> None:
    # `safetyhub up` runs the store in every worker; they all prepare partitions at start.
    pools = [await create_pool(database_url, min_size=1, max_size=1) for _ in range(4)]
    try:
        created = await asyncio.gather(*(ensure_partitions(p, TODAY) for p in pools))
    finally:
        for p in pools:
            await p.close()

    expected = {partition_name(TODAY + timedelta(days=d)) for d in range(-7, 4)}
    assert sum(created) == len(expected)
    assert await partitions(pool) == expected | {"observations_default"}


async def test_the_next_day_only_adds_what_is_missing(pool: asyncpg.Pool) -> None:
    await ensure_partitions(pool, TODAY)

    assert await ensure_partitions(pool, TODAY + timedelta(days=1)) == 1
    assert partition_name(TODAY + timedelta(days=4)) in await partitions(pool)


async def test_write_stores_rows_that_read_back_as_written(pool: asyncpg.Pool) -> None:
    await ensure_partitions(pool, TODAY)
    writer = ObservationWriter(pool)
    rows = [
        row(1),
        row(2, device="gd-102", unit="ppm", quality="uncertain"),
        row(3, confidence=0.9, box=BoxIn(x=0.1, y=0.2, width=0.3, height=0.4), attributes={"zone": "cdu-1"}),
    ]

    assert await writer.write(rows) == 3

    got = await stored(pool)
    assert [r["id"] for r in got] == ["obs-00001", "obs-00002", "obs-00003"]
    assert {r["part"] for r in got} == {partition_name(TODAY)}
    first, second, third = got
    assert (first["time"], first["tenant"], first["site"], first["device"], first["kind"]) == (
        NOW,
        "acme",
        "refinery",
        "gd-101",
        "gas.h2s",
    )
    assert first["value"] == 1.0
    assert first["received"] == NOW + timedelta(seconds=1)
    assert first["detail"] is None
    assert (second["device"], second["unit"], second["quality"]) == ("gd-102", "ppm", 2)
    assert third["confidence"] == pytest.approx(0.9)
    detail = json.loads(third["detail"])
    # The box travels as proto float32: equal to what was posted to about seven digits.
    assert detail["box"] == pytest.approx({"x": 0.1, "y": 0.2, "width": 0.3, "height": 0.4}, abs=1e-6)
    assert detail["attributes"] == {"zone": "cdu-1"}


async def test_redelivered_rows_are_never_stored_twice(pool: asyncpg.Pool) -> None:
    await ensure_partitions(pool, TODAY)
    writer = ObservationWriter(pool)
    batch = [row(n) for n in range(5)]
    assert await writer.write(batch) == 5

    assert await writer.write(batch) == 0
    assert await writer.write([row(3), row(4), row(5)]) == 1
    # One batch can hold the same message twice (redelivered while the first was still buffered).
    assert await writer.write([row(6), row(6)]) == 1

    assert [r["id"] for r in await stored(pool)] == [f"obs-{n:05d}" for n in range(7)]


async def test_new_and_repeated_batches_in_any_order_store_each_row_once(pool: asyncpg.Pool) -> None:
    # Whichever way the writer moves a batch (all new, or some already stored), the counts and the
    # rows are the same: after a repeat, new batches are stored whole, and a repeat after new
    # batches is still caught.
    await ensure_partitions(pool, TODAY)
    writer = ObservationWriter(pool)
    writes = [
        ([1, 2], 2),
        ([2, 3], 1),  # a repeat
        ([4, 5], 2),  # new after a repeat
        ([6], 1),
        ([6, 7, 7, 8], 2),  # repeats of a stored row and within the batch
        ([9, 10], 2),
        ([10, 11], 1),
    ]
    for numbers, new in writes:
        assert await writer.write([row(n, at=NOW + timedelta(seconds=n)) for n in numbers]) == new, numbers

    got = await stored(pool)
    assert [r["id"] for r in got] == [f"obs-{n:05d}" for n in range(1, 12)]


async def test_a_batch_written_by_two_workers_at_once_is_stored_once(pool: asyncpg.Pool) -> None:
    # A message redelivered to another worker while the first still writes it: one of the two
    # waits for the other's rows and then skips them.
    await ensure_partitions(pool, TODAY)
    batch = [row(n) for n in range(200)]
    for _ in range(5):
        await pool.execute("TRUNCATE observations")
        counts = await asyncio.gather(*(ObservationWriter(pool).write(batch) for _ in range(2)))
        assert sorted(counts) == [0, 200]
        assert await pool.fetchval("SELECT count(*) FROM observations") == 200


async def test_an_observation_is_named_by_tenant_id_and_time(pool: asyncpg.Pool) -> None:
    await ensure_partitions(pool, TODAY)
    writer = ObservationWriter(pool)

    def reading(value: float, *, tenant: str = "acme", at: datetime = NOW) -> Row:
        item = ObservationIn(
            site="refinery", device="gd-101", kind="gas.h2s", id="shared-id-1", time=at, value=value
        )
        return row_of(item, tenant=tenant)

    # Another tenant's reading with the same id and time is its own observation.
    assert await writer.write([reading(1.0)]) == 1
    assert await writer.write([reading(2.0, tenant="mipo")]) == 1
    # The same tenant, id and time again is a retry, whatever its value: the first copy stays,
    # in the same batch and in a later one.
    assert await writer.write([reading(3.0), reading(4.0, tenant="mipo")]) == 0
    later = NOW + timedelta(seconds=1)
    assert await writer.write([reading(5.0, at=later), reading(6.0, at=later)]) == 1
    # The same id at another time is another observation.
    assert await writer.write([reading(7.0, at=NOW - timedelta(hours=1))]) == 1

    got = await pool.fetch("SELECT tenant, time, value FROM observations ORDER BY tenant, time")
    assert [(r["tenant"], r["time"] - NOW, r["value"]) for r in got] == [
        ("acme", timedelta(hours=-1), 7.0),
        ("acme", timedelta(0), 1.0),
        ("acme", timedelta(seconds=1), 5.0),
        ("mipo", timedelta(0), 2.0),
    ]


async def test_concurrent_batches_on_several_connections_are_all_stored(pool: asyncpg.Pool) -> None:
    await ensure_partitions(pool, TODAY)
    writer = ObservationWriter(pool)
    batches = [[row(b * 100 + n) for n in range(50)] for b in range(8)]

    counts = await asyncio.gather(*(writer.write(batch) for batch in batches))

    assert counts == [50] * 8
    assert await pool.fetchval("SELECT count(*) FROM observations") == 400


async def test_a_row_thirty_days_back_lands_in_the_default_partition_and_reads_back(
    pool: asyncpg.Pool,
) -> None:
    await ensure_partitions(pool, TODAY)
    writer = ObservationWriter(pool)
    old = NOW - timedelta(days=30)

    assert await writer.write([row(1, at=old), row(2)]) == 2
    assert await writer.write([row(1, at=old)]) == 0, "the default partition deduplicates too"

    got = await pool.fetch(
        "SELECT id, time, tableoid::regclass::text AS part FROM observations"
        " WHERE site = $1 AND time >= $2 AND time < $3",
        "refinery",
        old - timedelta(hours=1),
        old + timedelta(hours=1),
    )
    assert [(r["id"], r["time"], r["part"]) for r in got] == [("obs-00001", old, "observations_default")]


@pytest.mark.parametrize(
    "extra",
    [
        {"snapshot": "frames/cam-7/0001.jpg\u0000"},
        {"attributes": {"note": "operator\u0000"}},
        {"attributes": {"zone\u0000": "cdu-1"}},
    ],
    ids=["nul-in-snapshot", "nul-in-attribute-value", "nul-in-attribute-key"],
)
async def test_what_the_ingest_contract_accepts_the_store_can_keep(
    pool: asyncpg.Pool, extra: dict[str, object]
) -> None:
    # Ingest answers 202 once an item decodes and passes its checks (none of which look at
    # snapshot or attributes); the store must then be able to write it, or the gateway was told
    # "accepted" for an observation that can only end in DEADLETTER after poison_after retries.
    body = msgspec.json.encode(
        {"site": "refinery", "device": "gd-101", "kind": "gas.h2s", "value": 1.0, **extra}
    )
    try:
        item = msgspec.json.decode(body, type=ObservationIn)
    except msgspec.ValidationError:
        return  # refused at the door with a 400 naming the field: also right
    await ensure_partitions(pool, TODAY)

    assert await ObservationWriter(pool).write([row_of(item)]) == 1
