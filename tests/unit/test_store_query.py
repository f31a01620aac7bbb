"""Observation queries (cursor, bound parameters) and the daily partitions the store prepares."""

from __future__ import annotations

import base64
import itertools
import re
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from services.store.partitions import days_to_prepare, partition_name
from services.store.query import BadCursor, ObservationQuery, build_sql, decode_cursor, encode_cursor

# ---------------------------------------------------------------- cursor


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 22, 0, 15, 0, 123456, tzinfo=UTC),
        datetime(2026, 11, 22, 9, 15, tzinfo=timezone(timedelta(hours=9))),
        datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
    ],
)
def test_a_cursor_gives_back_the_time_and_id_it_was_made_from(moment: datetime) -> None:
    cursor = encode_cursor(moment, "01JD8Z0000000000000000000A")

    assert decode_cursor(cursor) == (moment, "01JD8Z0000000000000000000A")


def test_a_cursor_is_safe_in_a_query_string() -> None:
    cursor = encode_cursor(datetime(2026, 11, 22, tzinfo=UTC), "gw-7:000123/ü?&=+")

    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not a cursor!",
        "ü",
        "e30",  # {}
        _b64(b"[]"),
        _b64(b'["2026-11-22T00:15:00+00:00"]'),
        _b64(b'["yesterday", "01JD"]'),
        _b64(b'[1732234500, "01JD"]'),
        _b64(b'["2026-11-22T00:15:00+00:00", 7]'),
        _b64(b"\xff\xfe\x00"),
        # A year-1 time with a positive offset has no UTC instant; no offset is not one we wrote.
        _b64(b'["0001-01-01T00:30:00+01:00", "01JD"]'),
        _b64(b'["2026-11-22T00:15:00", "01JD"]'),
        # A NUL, which PostgreSQL text cannot hold, is in no id the store returns.
        _b64(b'["2026-11-22T00:15:00+00:00", "01JD\\u0000"]'),
        _b64(b'["2026-11-22T00:15:00+00:00", ""]'),
    ],
)
def test_a_cursor_the_api_did_not_return_is_refused(cursor: str) -> None:
    with pytest.raises(BadCursor):
        decode_cursor(cursor)


# ---------------------------------------------------------------- SQL


INJECTION = "x'; DROP TABLE observations; --"


def placeholders(sql: str) -> set[int]:
    return {int(n) for n in re.findall(r"\$(\d+)", sql)}


def test_every_filter_is_bound_as_a_parameter_never_spliced_into_the_sql() -> None:
    since = datetime(2026, 11, 21, tzinfo=UTC)
    until = datetime(2026, 11, 22, tzinfo=UTC)
    after = (datetime(2026, 11, 21, 12, tzinfo=UTC), "01JD-after-id")
    query = ObservationQuery(
        sites=["ulsan-refinery", "site'--"],
        device=INJECTION,
        kind="gas.h2s' OR '1'='1",
        since=since,
        until=until,
        limit=50,
        after=after,
    )

    sql, params = build_sql(query)

    for text in (INJECTION, "gas.h2s", "site'--", "01JD-after-id", "2026"):
        assert text not in sql
    assert "'" not in sql  # no literal of any kind
    assert ["ulsan-refinery", "site'--"] in params
    for value in (INJECTION, "gas.h2s' OR '1'='1", since, until, after[0], after[1]):
        assert value in params
    assert placeholders(sql) == set(range(1, len(params) + 1))


def test_a_query_without_filters_is_still_limited_to_the_given_sites() -> None:
    sql, params = build_sql(ObservationQuery(sites=["ulsan-refinery"]))

    assert params[0] == ["ulsan-refinery"]
    assert placeholders(sql) == set(range(1, len(params) + 1))
    assert "ulsan-refinery" not in sql


def test_results_come_newest_first() -> None:
    sql, _ = build_sql(ObservationQuery(sites=["ulsan-refinery"]))

    assert re.search(r"ORDER BY time DESC, id DESC", sql)


# ---------------------------------------------------------------- partitions


def test_a_fresh_database_gets_partitions_from_a_week_back_to_three_days_ahead() -> None:
    today = date(2026, 3, 2)

    days = days_to_prepare(today, fresh=True)

    assert len(days) == 11
    assert days[0] == date(2026, 2, 23)
    assert days[-1] == date(2026, 3, 5)
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(days))


def test_later_runs_only_add_today_and_the_days_ahead() -> None:
    days = days_to_prepare(date(2026, 12, 30), fresh=False)

    assert days == [date(2026, 12, 30), date(2026, 12, 31), date(2027, 1, 1), date(2027, 1, 2)]


def test_a_partition_is_named_after_its_day() -> None:
    assert partition_name(date(2026, 3, 1)) == "observations_p20260301"
    assert partition_name(date(2026, 12, 31)) == "observations_p20261231"
