"""Incident list queries: cursors bound to their query, and the box around a `near` circle."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime

import pytest

from services.incidents.domain.fusion import distance_m
from services.incidents.read_query import BadCursor, IncidentQuery, bounding_box, decode_cursor, encode_cursor

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
    ("center", "radius"),
    [
        ((35.4778, 129.3554), 500.0),
        ((35.4778, 129.3554), 50_000.0),
        ((0.0, 179.999), 5_000.0),
        ((89.99, 0.0), 5_000.0),
    ],
)
def test_the_box_holds_the_whole_circle(center: tuple[float, float], radius: float) -> None:
    south, north, west, east = bounding_box(center, radius)
    for bearing in range(0, 360, 15):
        # Points just inside the circle, all round: each must be in the box.
        lat0, lon0 = map(math.radians, center)
        d = radius * 0.999 / 6_371_008.8
        b = math.radians(bearing)
        lat = math.asin(math.sin(lat0) * math.cos(d) + math.cos(lat0) * math.sin(d) * math.cos(b))
        lon = lon0 + math.atan2(
            math.sin(b) * math.sin(d) * math.cos(lat0), math.cos(d) - math.sin(lat0) * math.sin(lat)
        )
        point = (math.degrees(lat), (math.degrees(lon) + 540) % 360 - 180)
        assert distance_m(center, point) <= radius
        assert south <= point[0] <= north
        if west <= east:
            assert west <= point[1] <= east
