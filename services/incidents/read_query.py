"""Incidents as readers ask for them: filtered, ordered, paged; one with its timeline.

The list is newest first (opened_at, then id, descending); with `near` it is nearest first
(distance, then id). Pages continue from an opaque keyset cursor that also carries a digest of
the filters it was made for, so a cursor passed with other filters is refused (400), not
silently read as a position in another list.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from services.common.db.pool import bounded

MAX_LIMIT = 500
QUERY_TIMEOUT_S = 5.0
MAX_TIMELINE = 500
EARTH_RADIUS_M = 6_371_008.8


class BadCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class IncidentQuery:
    tenant: str
    sites: Sequence[str]
    statuses: Sequence[str] | None = None  # None: any
    severities: Sequence[str] | None = None
    types: Sequence[str] | None = None
    since: datetime | None = None  # changed at or after
    near: tuple[float, float] | None = None  # lat, lon: nearest first
    radius_m: float | None = None  # with near: no farther than this
    limit: int = 100

    def digest(self) -> str:
        """What the cursor must have been made for: every filter, not the page size."""
        parts = (
            self.tenant,
            ",".join(sorted(self.sites)),
            ",".join(sorted(self.statuses or ())),
            ",".join(sorted(self.severities or ())),
            ",".join(sorted(self.types or ())),
            self.since.astimezone(UTC).isoformat() if self.since else "",
            repr(self.near),
            repr(self.radius_m),
        )
        return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class Cursor:
    key: float | datetime  # the chord through the unit sphere (near), or opened_at
    id: str


def encode_cursor(query: IncidentQuery, key: float | datetime, incident_id: str) -> str:
    value = key if isinstance(key, float) else key.isoformat()
    raw = msgspec.json.encode([query.digest(), value, incident_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_CURSOR = msgspec.json.Decoder(tuple[str, float | datetime, str])


def decode_cursor(query: IncidentQuery, cursor: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4))
        digest, key, incident_id = _CURSOR.decode(raw)
    except (
        UnicodeEncodeError,
        binascii.Error,
        ValueError,
        msgspec.DecodeError,
        msgspec.ValidationError,
    ) as err:
        raise BadCursor("cursor is not one this API returned") from err
    if digest != query.digest():
        raise BadCursor("cursor belongs to another query: pass the filters it came with")
    near = query.near is not None
    if near != isinstance(key, float) or "\x00" in incident_id:
        raise BadCursor("cursor is not one this API returned")
    if isinstance(key, datetime):
        if key.tzinfo is None:
            raise BadCursor("cursor is not one this API returned")
        try:
            key.astimezone(UTC)
        except OverflowError as err:
            raise BadCursor("cursor is not one this API returned") from err
    return Cursor(key, incident_id)


def unit_vector(position: tuple[float, float]) -> list[float]:
    """A WGS 84 latitude and longitude as a point on the unit sphere (the `earth` column's)."""
    lat, lon = map(math.radians, position)
    return [math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)]


def chord_of(radius_m: float) -> float:
    """The straight-line distance through the unit sphere of a great-circle distance."""
    return 2 * math.sin(min(radius_m / EARTH_RADIUS_M, math.pi) / 2)


# PostgreSQL cannot estimate how many positions a cube holds (a fixed guess of a few rows), so with
# a radius its first plans read every incident in the cube through a bitmap and sort them all:
# 50-150 ms with 100,000 in it, against 2 ms for walking the index nearest first. Within this
# query's transaction, the planner is left only the walk.
NEAR_PLAN = "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off"


def build_list_sql(query: IncidentQuery, after: Cursor | None) -> tuple[str, list[Any]]:
    params: list[Any] = [query.tenant, list(query.sites)]

    def bind(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    where = ["tenant = $1", "site = ANY($2::text[])"]
    if query.statuses is not None:
        where.append(f"status = ANY({bind(list(query.statuses))}::text[])")
    if query.severities is not None:
        where.append(f"severity = ANY({bind(list(query.severities))}::text[])")
    if query.types is not None:
        where.append(f"type = ANY({bind(list(query.types))}::text[])")
    if query.since is not None:
        where.append(f"updated_at >= {bind(query.since)}")
    if query.near is None:
        if after is not None:
            where.append(f"(opened_at, id) < ({bind(after.key)}::timestamptz, {bind(after.id)})")
        sql = (
            "SELECT site, body, version, opened_at, NULL::float8 AS distance_m FROM incidents "
            f"WHERE {' AND '.join(where)} ORDER BY opened_at DESC, id DESC LIMIT {bind(query.limit + 1)}"
        )
        return sql, params
    # Nearest first by the GiST index on (tenant, earth) (migration 0003): the planner walks it
    # in chord order and stops after a page, whatever the number of incidents.
    centre = f"cube({bind(unit_vector(query.near))}::float8[])"
    chord = f"(earth <-> {centre})"
    where.append("earth IS NOT NULL")
    if query.radius_m is not None:
        # The cube around the ball of the radius, so the index stops at its edge too.
        where.append(f"earth <@ cube_enlarge({centre}, {bind(chord_of(query.radius_m))}, 3)")
        where.append(f"{chord} <= {bind(chord_of(query.radius_m))}")
    if after is not None:
        # The cursor holds the chord itself: the order's own key, exact across pages.
        where.append(f"({chord}, id) > ({bind(after.key)}::float8, {bind(after.id)})")
    sql = (
        f"SELECT site, body, version, opened_at, {chord} AS chord, "
        f"2 * {EARTH_RADIUS_M} * asin(least(1, {chord} / 2)) AS distance_m "
        f"FROM incidents WHERE {' AND '.join(where)} ORDER BY {chord}, id LIMIT {bind(query.limit + 1)}"
    )
    return sql, params


async def list_incidents(
    pool: asyncpg.Pool, query: IncidentQuery, after: Cursor | None, *, timeout_s: float = QUERY_TIMEOUT_S
) -> tuple[list[asyncpg.Record], str | None]:
    sql, params = build_list_sql(query, after)

    async def run() -> list[asyncpg.Record]:
        async with pool.acquire() as conn:
            if query.near is None:
                return list(await conn.fetch(sql, *params))
            async with conn.transaction():
                await conn.execute(NEAR_PLAN)
                return list(await conn.fetch(sql, *params))

    rows = await bounded(timeout_s, run())
    cursor = None
    if len(rows) > query.limit:
        rows = rows[: query.limit]
        last = rows[-1]
        incident_id = msgspec.json.decode(last["body"])["id"]
        key = float(last["chord"]) if query.near is not None else last["opened_at"]
        cursor = encode_cursor(query, key, incident_id)
    return rows, cursor


_TIMELINE = """
SELECT id, at, actor, change, what, note, alarm_id, status FROM incident_timeline
WHERE tenant = $1 AND incident_id = $2 ORDER BY at, seq LIMIT $3
"""


async def timeline_of(conn: asyncpg.Connection, tenant: str, incident_id: str) -> list[asyncpg.Record]:
    return list(await conn.fetch(_TIMELINE, tenant, incident_id, MAX_TIMELINE))
