"""Incident list queries: cursors bound to their query, and `near`'s distance through the sphere."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime

import pytest

from services.incidents.domain.fusion import distance_m
from services.incidents.read_query import (
    EARTH_RADIUS_M,
    BadCursor,
    IncidentQuery,
    chord_of,
    decode_cursor,
    encode_cursor,
    unit_vector,
)

QUERY = IncidentQuery(tenant="ulsan-refining", sites=["ulsan-refinery"], statuses=["open"])
NEAR = IncidentQuery(
    tenant="ulsan-refining", sites=["ulsan-refinery"], near=(35.4778, 129.3554), radius_m=500
)
AT = datetime(2026, 11, 22, 0, 15, tzinfo=UTC)


def test_a_cursor_reads_back_for_its_own_query_only() -> None:
    cursor = encode_cursor(QUERY, AT, "01M809PETR5H7MZ0A9QK3W8XJT")
    back = decode_cursor(QUERY, cursor)
    assert (back.key, back.id) == (AT, "01M809PETR5H7MZ0A9QK3W8XJT")
    # Another page size is the same query; other filters are not.
    assert decode_cursor(dataclasses.replace(QUERY, limit=5), cursor).id == back.id
    with pytest.raises(BadCursor, match="another query"):
        decode_cursor(IncidentQuery(tenant="ulsan-refining", sites=["ulsan-refinery"]), cursor)
    with pytest.raises(BadCursor, match="another query"):
        decode_cursor(
            IncidentQuery(tenant="mipo-petrochem", sites=["ulsan-refinery"], statuses=["open"]), cursor
        )


@pytest.mark.parametrize("cursor", ["", "garbage", "e30", "WyJhIiwxLCJiIl0"])
def test_a_cursor_this_api_did_not_make_is_refused(cursor: str) -> None:
    with pytest.raises(BadCursor):
        decode_cursor(QUERY, cursor)


def test_a_near_cursor_holds_a_distance() -> None:
    cursor = encode_cursor(NEAR, 12.5, "01M809PETR5H7MZ0A9QK3W8XJT")
    assert decode_cursor(NEAR, cursor).key == 12.5
    with pytest.raises(BadCursor):
        decode_cursor(QUERY, cursor)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ((35.4778, 129.3554), (35.4790, 129.3570)),  # across a unit
        ((35.4778, 129.3554), (35.5400, 129.3200)),  # across the complex
        ((0.0, 179.999), (0.0, -179.999)),  # across the antimeridian
        ((89.99, 0.0), (89.99, 180.0)),  # over the pole
        ((35.0, 129.0), (-35.0, -51.0)),  # the other side of the earth
    ],
)
def test_the_chord_through_the_sphere_gives_the_great_circle_distance(
    a: tuple[float, float], b: tuple[float, float]
) -> None:
    chord = math.dist(unit_vector(a), unit_vector(b))
    metres = 2 * EARTH_RADIUS_M * math.asin(min(1.0, chord / 2))

    assert metres == pytest.approx(distance_m(a, b), rel=1e-6, abs=0.01)
    # A radius's chord bounds exactly the points within it.
    assert chord <= chord_of(metres * 1.000001)
    assert chord > chord_of(metres * 0.999)


def test_a_radius_past_half_the_earth_takes_every_point() -> None:
    assert chord_of(30_000_000) == pytest.approx(2.0)
