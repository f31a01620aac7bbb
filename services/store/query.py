"""Observation queries: filters, newest first, paged by an opaque cursor over (time, id)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from services.common.contracts.quality import quality_name
from services.common.db.pool import bounded
from services.common.errors import SafetyhubError
from services.common.types import ClientId

MAX_LIMIT = 1000


class BadCursor(SafetyhubError):
    pass


@dataclass(frozen=True, slots=True)
class ObservationQuery:
    sites: list[str]  # the sites asked for, already narrowed to what the caller may read
    device: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    after: tuple[datetime, str] | None = None  # decoded cursor: continue below this (time, id)


def encode_cursor(moment: datetime, row_id: str) -> str:
    raw = msgspec.json.encode([moment.isoformat(), row_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# A stored row's id is a client id or a derived ULID, so a cursor carrying anything else (a NUL,
# which PostgreSQL text cannot hold) was not made here.
_CURSOR = msgspec.json.Decoder(tuple[datetime, ClientId])


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4))
        moment, row_id = _CURSOR.decode(raw)
        # A stored time is in UTC; one that has no UTC instant (year 1 with a positive offset),
        # or no offset at all, was not written by encode_cursor.
        if moment.tzinfo is None:
            raise ValueError("no offset")
        moment.astimezone(UTC)
    except (ValueError, OverflowError, binascii.Error, msgspec.DecodeError) as err:
        raise BadCursor("cursor is not one this API returned") from err
    return moment, row_id


def build_sql(query: ObservationQuery) -> tuple[str, list[Any]]:
    params: list[Any] = [query.sites]
    where = ["site = ANY($1::text[])"]

    def bind(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    if query.device is not None:
        where.append(f"device = {bind(query.device)}")
    if query.kind is not None:
        where.append(f"kind = {bind(query.kind)}")
    if query.since is not None:
        where.append(f"time >= {bind(query.since)}")
    if query.until is not None:
        where.append(f"time < {bind(query.until)}")
    if query.after is not None:
        where.append(f"(time, id) < ({bind(query.after[0])}, {bind(query.after[1])})")
    sql = (
        "SELECT id, time, tenant, site, device, kind, value, unit, quality, confidence, snapshot, detail, "
        f"received, stored FROM observations WHERE {' AND '.join(where)} "
        f"ORDER BY time DESC, id DESC LIMIT {bind(query.limit + 1)}"
    )
    return sql, params


def to_json(row: asyncpg.Record) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": row["id"],
        "tenant": row["tenant"],
        "site": row["site"],
        "device": row["device"],
        "kind": row["kind"],
        "time": row["time"].isoformat(),
        "quality": quality_name(row["quality"]),
        "received": row["received"].isoformat(),
    }
    if row["value"] is not None:
        item["value"] = row["value"]
    if row["unit"]:
        item["unit"] = row["unit"]
    if row["confidence"] is not None:
        item["confidence"] = row["confidence"]
    if row["snapshot"]:
        item["snapshot"] = row["snapshot"]
    if row["detail"]:
        item.update(msgspec.json.decode(row["detail"]))
    return item


# A page is at most 1,000 rows found by index: far longer means PostgreSQL is not answering, and a
# reader is better served by a prompt 503 than by a request hanging on the pool.
QUERY_TIMEOUT_S = 5.0


async def run_query(
    pool: asyncpg.Pool, query: ObservationQuery, *, timeout_s: float = QUERY_TIMEOUT_S
) -> tuple[list[dict[str, Any]], str | None]:
    """One page; TimeoutError when PostgreSQL has not answered within `timeout_s`, however it hangs."""
    sql, params = build_sql(query)
    rows = await bounded(timeout_s, pool.fetch(sql, *params))
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    cursor = encode_cursor(rows[-1]["time"], rows[-1]["id"]) if more and rows else None
    return [to_json(r) for r in rows], cursor
