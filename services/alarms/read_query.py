"""Alarm points and their transitions as readers ask for them: filtered, ordered, paged.

The alarm list is ordered as an operator works it: the most urgent priority first, then the most
recent change first (a point that never changed last), then by site and id so the order is total.
Pages continue from an opaque keyset cursor over those four keys, so a page is one index-backed
range whatever the page number, and rows inserted meanwhile neither repeat nor shift a page.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from services.alarms.domain.model import Priority
from services.common.db.pool import bounded
from services.common.types import Slug

MAX_LIMIT = 500
# Pages are found by index: far longer means PostgreSQL is not answering (a prompt 503 is better).
QUERY_TIMEOUT_S = 5.0
# Most urgent first.
PRIORITY_ORDER: tuple[str, ...] = (Priority.EMERGENCY, Priority.HIGH, Priority.MEDIUM, Priority.LOW)
# A point that never changed sorts after every one that did.
_NEVER = datetime.min.replace(tzinfo=UTC)

_POINT_COLUMNS = (
    "tenant, site, alarm_id, device, rule_id, condition, priority, alarm_class, state, active, "
    "latched, shelved_until, flags, changed_at, snapshot"
)
_RANK = "array_position($1::text[], priority)"
_CHANGED = "coalesce(changed_at, '-infinity'::timestamptz)"


class BadCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ListCursor:
    rank: int
    changed_at: datetime | None
    site: str
    alarm_id: str


@dataclass(frozen=True, slots=True)
class AlarmListQuery:
    tenant: str
    sites: Sequence[str]
    states: Sequence[str] | None = None  # None: every state
    priorities: Sequence[str] | None = None
    limit: int = 100
    after: ListCursor | None = None


# ---------------------------------------------------------------- cursors


def _b64(value: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(value)).decode().rstrip("=")


def _unb64(cursor: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4))
    except (UnicodeEncodeError, binascii.Error, ValueError) as err:
        raise BadCursor("cursor is not one this API returned") from err


def encode_list_cursor(row: asyncpg.Record) -> str:
    rank = PRIORITY_ORDER.index(row["priority"]) + 1
    changed = row["changed_at"]
    return _b64([rank, changed.isoformat() if changed is not None else None, row["site"], row["alarm_id"]])


# What a cursor this API made holds: anything else (a NUL PostgreSQL text cannot hold, an unknown
# rank) was not made here.
_LIST_CURSOR = msgspec.json.Decoder(tuple[int, datetime | None, Slug, str])
_TRANSITION_CURSOR = msgspec.json.Decoder(tuple[datetime, int])


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("no offset")
    moment.astimezone(UTC)  # one with no UTC instant was not written here either
    return moment


def decode_list_cursor(cursor: str) -> ListCursor:
    try:
        rank, changed, site, alarm_id = _LIST_CURSOR.decode(_unb64(cursor))
        if not 1 <= rank <= len(PRIORITY_ORDER) or "\x00" in alarm_id:
            raise ValueError("out of range")
        return ListCursor(rank, _aware(changed) if changed is not None else None, site, alarm_id)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, OverflowError) as err:
        raise BadCursor("cursor is not one this API returned") from err


def encode_transition_cursor(row: asyncpg.Record) -> str:
    return _b64([row["at"].isoformat(), row["seq"]])


def decode_transition_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        moment, seq = _TRANSITION_CURSOR.decode(_unb64(cursor))
        if not 0 <= seq < 2**63:  # a bigserial: anything else would fail in PostgreSQL, not here
            raise ValueError("out of range")
        return _aware(moment), seq
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, OverflowError) as err:
        raise BadCursor("cursor is not one this API returned") from err


# ---------------------------------------------------------------- queries


def build_list_sql(query: AlarmListQuery) -> tuple[str, list[Any]]:
    params: list[Any] = [list(PRIORITY_ORDER), query.tenant, list(query.sites)]
    where = ["tenant = $2", "site = ANY($3::text[])"]

    def bind(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    if query.states is not None:
        where.append(f"state = ANY({bind(list(query.states))}::text[])")
    if query.priorities is not None:
        where.append(f"priority = ANY({bind(list(query.priorities))}::text[])")
    if query.after is not None:
        after = query.after
        rank, changed = bind(after.rank), bind(after.changed_at or _NEVER)
        site, alarm_id = bind(after.site), bind(after.alarm_id)
        # Rank ascending, change descending, then (site, id) ascending: past the cursor's row.
        where.append(
            f"({_RANK} > {rank} OR ({_RANK} = {rank} AND ({_CHANGED} < {changed}"
            f" OR ({_CHANGED} = {changed} AND (site, alarm_id) > ({site}, {alarm_id})))))"
        )
    sql = (
        f"SELECT {_POINT_COLUMNS} FROM alarm_points WHERE {' AND '.join(where)} "
        f"ORDER BY {_RANK}, {_CHANGED} DESC, site, alarm_id LIMIT {bind(query.limit + 1)}"
    )
    return sql, params


async def list_alarms(
    pool: asyncpg.Pool, query: AlarmListQuery, *, timeout_s: float = QUERY_TIMEOUT_S
) -> tuple[list[asyncpg.Record], str | None]:
    """One page of points and the cursor of the next (None on the last page)."""
    sql, params = build_list_sql(query)
    rows = await bounded(timeout_s, pool.fetch(sql, *params))
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return rows, encode_list_cursor(rows[-1]) if more and rows else None


FIND_SQL = f"""
SELECT {_POINT_COLUMNS} FROM alarm_points
WHERE tenant = $1 AND site = ANY($2::text[]) AND alarm_id = $3
ORDER BY site
"""

TRANSITIONS_SQL = """
SELECT id, seq, at, old_state, new_state, active, observation_ids, timer, actor, action, reason,
       flags, activation
FROM alarm_transitions
WHERE tenant = $1 AND site = $2 AND alarm_id = $3 AND ($4::timestamptz IS NULL OR (at, seq) < ($4, $5))
ORDER BY at DESC, seq DESC
LIMIT $6
"""


async def find_alarm(
    pool: asyncpg.Pool,
    tenant: str,
    sites: Sequence[str],
    alarm_id: str,
    *,
    timeout_s: float = QUERY_TIMEOUT_S,
) -> list[asyncpg.Record]:
    """The points with `alarm_id` at the tenant's `sites` (ids are unique per site only)."""
    return await bounded(timeout_s, pool.fetch(FIND_SQL, tenant, list(sites), alarm_id))


@dataclass(frozen=True, slots=True)
class TransitionPage:
    tenant: str
    site: str
    alarm_id: str
    limit: int
    after: tuple[datetime, int] | None = None


async def transitions_of(
    pool: asyncpg.Pool, page: TransitionPage, *, timeout_s: float = QUERY_TIMEOUT_S
) -> tuple[list[asyncpg.Record], str | None]:
    """A point's transitions, newest first, one page, and the cursor of the next."""
    at, seq = page.after if page.after is not None else (None, 0)
    rows = await bounded(
        timeout_s, pool.fetch(TRANSITIONS_SQL, page.tenant, page.site, page.alarm_id, at, seq, page.limit + 1)
    )
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return rows, encode_transition_cursor(rows[-1]) if more and rows else None
