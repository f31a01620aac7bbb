"""The alarm read API's cursors: what it made decodes back; anything else is refused as a cursor
(a 400 naming `cursor`), never passed to PostgreSQL to fail there."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from services.alarms.read_query import (
    BadCursor,
    ListCursor,
    decode_list_cursor,
    decode_transition_cursor,
    encode_list_cursor,
    encode_transition_cursor,
)

AT = datetime(2026, 11, 22, 9, 15, 30, 123456, tzinfo=UTC)


def b64(value: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(value)).decode().rstrip("=")


def test_a_list_cursor_comes_back_as_it_was_made() -> None:
    row = {"priority": "high", "changed_at": AT, "site": "ulsan-refinery", "alarm_id": "gd-1--lel-high"}
    never = {**row, "priority": "low", "changed_at": None}

    assert decode_list_cursor(encode_list_cursor(row)) == ListCursor(
        2, AT, "ulsan-refinery", "gd-1--lel-high"
    )  # type: ignore[arg-type]
    assert decode_list_cursor(encode_list_cursor(never)).changed_at is None  # type: ignore[arg-type]


def test_a_transition_cursor_comes_back_as_it_was_made() -> None:
    assert decode_transition_cursor(encode_transition_cursor({"at": AT, "seq": 42})) == (AT, 42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "%%%",
        "é",
        b64([0, None, "ulsan-refinery", "a"]),  # no such rank
        b64([5, None, "ulsan-refinery", "a"]),
        b64([1, None, "Not A Site", "a"]),
        b64([1, None, "ulsan-refinery", "a\u0000b"]),  # PostgreSQL text cannot hold a NUL
        b64([1, "2026-11-22T09:15:30", "ulsan-refinery", "a"]),  # no offset
        b64([1, None, "ulsan-refinery"]),
        b64({"rank": 1}),
    ],
)
def test_a_list_cursor_not_made_here_is_refused(cursor: str) -> None:
    with pytest.raises(BadCursor):
        decode_list_cursor(cursor)


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64!",
        b64(["2026-11-22T09:15:30Z", 2**63]),  # past a bigserial
        b64(["2026-11-22T09:15:30Z", -1]),
        b64(["0001-01-01T00:00:00+23:59", 1]),  # no UTC instant
        b64(["2026-11-22T09:15:30Z"]),
    ],
)
def test_a_transition_cursor_not_made_here_is_refused(cursor: str) -> None:
    with pytest.raises(BadCursor):
        decode_transition_cursor(cursor)
