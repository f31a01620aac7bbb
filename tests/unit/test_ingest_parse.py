"""Request bodies to typed observations: what is parsed, what is refused, and which field is named."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from services.ingest.domain.parse import MalformedBody, TooManyItems, parse_json, parse_ndjson

READING: dict[str, Any] = {
    "site": "ulsan-refinery",
    "device": "gd-cdu1-101",
    "kind": "gas.h2s",
    "value": 4.5,
    "unit": "ppm",
    "time": "2026-11-22T09:15:00+09:00",
}


def reading(**changes: Any) -> dict[str, Any]:
    item = {**READING, **changes}
    return {k: v for k, v in item.items() if v is not None}


def body(value: Any) -> bytes:
    return msgspec.json.encode(value)


def ndjson(*items: dict[str, Any]) -> bytes:
    return b"\n".join(body(item) for item in items) + b"\n"


def fields(parsed: Any) -> dict[int, str]:
    return {error.index: error.field for error in parsed.errors}


# ---------------------------------------------------------------- accepted shapes


def test_a_single_object_is_one_item() -> None:
    parsed = parse_json(body(reading()), max_items=10)

    assert parsed.count == 1
    assert parsed.errors == []
    [(index, item)] = parsed.items
    assert index == 0
    assert (item.site, item.device, item.kind, item.value, item.unit) == (
        "ulsan-refinery",
        "gd-cdu1-101",
        "gas.h2s",
        4.5,
        "ppm",
    )
    assert item.time is not None
    assert item.time.utcoffset() is not None
    assert item.time.isoformat() == "2026-11-22T09:15:00+09:00"


def test_an_array_keeps_the_order_and_indexes_of_its_items() -> None:
    parsed = parse_json(body([reading(value=1.0), reading(value=2.0), reading(value=3.0)]), max_items=10)

    assert parsed.count == 3
    assert parsed.errors == []
    assert [(i, item.value) for i, item in parsed.items] == [(0, 1.0), (1, 2.0), (2, 3.0)]


def test_an_empty_array_has_nothing_to_accept_or_refuse() -> None:
    parsed = parse_json(b"[]", max_items=10)

    assert (parsed.count, parsed.items, parsed.errors) == (0, [], [])


def test_ndjson_gives_one_item_per_line_and_skips_blank_lines() -> None:
    text = body(reading(value=1.0)) + b"\n\n   \n" + body(reading(value=2.0)) + b"\r\n"

    parsed = parse_ndjson(text, max_items=10)

    assert parsed.count == 2
    assert parsed.errors == []
    assert [(i, item.value) for i, item in parsed.items] == [(0, 1.0), (1, 2.0)]


def test_the_client_may_choose_the_id_and_correlation_id() -> None:
    [(_, item)] = parse_json(body(reading(id="gw-7:000123", correlationId="shift-42")), max_items=1).items

    assert item.id == "gw-7:000123"
    assert item.correlation_id == "shift-42"


# ---------------------------------------------------------------- malformed bodies (400)


@pytest.mark.parametrize(
    "text",
    [
        b'{"site": "ulsan-refinery", "device":',
        b"[{}, {]",
        b"[1, 2",
        b"not json at all",
        b"",
        b"\xef\xbb\xbf" + body(READING),  # a byte-order mark is not JSON
    ],
)
def test_malformed_json_is_refused_as_a_whole(text: bytes) -> None:
    with pytest.raises(MalformedBody):
        parse_json(text, max_items=10)


@pytest.mark.parametrize("text", [b"42", b'"gd-cdu1-101"', b"true", b"null", b"4.5"])
def test_a_json_scalar_body_is_refused(text: bytes) -> None:
    with pytest.raises(MalformedBody, match="object"):
        parse_json(text, max_items=10)


@pytest.mark.parametrize(
    "text",
    [
        # The syntax error comes after a field that is also invalid: still not JSON at all.
        b'{"unti": "ppm", ',
        b'{"site": 5, "device": "gd-cdu1-101",,}',
    ],
)
def test_a_broken_object_is_malformed_even_when_it_starts_with_an_invalid_field(text: bytes) -> None:
    with pytest.raises(MalformedBody):
        parse_json(text, max_items=10)


def test_a_malformed_ndjson_line_refuses_the_body_and_names_the_line() -> None:
    text = body(reading()) + b"\n" + b'{"site": "ulsan-refinery", "device": \n'

    with pytest.raises(MalformedBody, match="line 2"):
        parse_ndjson(text, max_items=10)


def test_a_broken_ndjson_line_is_malformed_even_when_it_starts_with_an_invalid_field() -> None:
    text = body(reading()) + b"\n" + b'{"unti": "ppm", \n'

    with pytest.raises(MalformedBody, match="line 2"):
        parse_ndjson(text, max_items=10)


# ---------------------------------------------------------------- too many items (413)


def test_an_array_with_more_items_than_allowed_is_refused_with_count_and_limit() -> None:
    with pytest.raises(TooManyItems) as info:
        parse_json(body([reading()] * 4), max_items=3)

    assert "4" in str(info.value)
    assert "3" in str(info.value)


def test_an_array_with_exactly_the_limit_is_accepted() -> None:
    parsed = parse_json(body([reading()] * 3), max_items=3)

    assert len(parsed.items) == 3


def test_ndjson_with_more_lines_than_allowed_is_refused() -> None:
    with pytest.raises(TooManyItems):
        parse_ndjson(ndjson(*[reading()] * 4), max_items=3)


def test_blank_ndjson_lines_do_not_count_towards_the_limit() -> None:
    parsed = parse_ndjson(b"\n\n".join(body(reading()) for _ in range(3)), max_items=3)

    assert len(parsed.items) == 3


# ---------------------------------------------------------------- invalid items (named index and field)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (reading(value="high"), "value"),
        (reading(box={"x": 1.5, "y": 0.1, "width": 0.2, "height": 0.2}), "box.x"),
        (reading(box={"x": 0.1, "y": 0.1, "width": 0.2}), "box.height"),
        (reading(unti="ppm"), "unti"),
        (reading(site=None), "site"),
        (reading(site="ulsan-refinery\n"), "site"),  # would otherwise end up in a NATS subject
        (reading(site="Ulsan-Refinery"), "site"),
        (reading(site="ulsan.refinery"), "site"),  # a dot would add a subject token
        (reading(device="gd cdu1 101"), "device"),
        (reading(device="gd-cdu1-101.>"), "device"),
        (reading(device="gd-cdu1-101\n"), "device"),
        (reading(kind="Gas H2S"), "kind"),
        (reading(id="reading 1"), "id"),
        (reading(quality="fine"), "quality"),
        (reading(confidence=1.2), "confidence"),
        (reading(position={"latitude": 91.0, "longitude": 129.35}), "position.latitude"),
    ],
)
def test_an_invalid_item_names_its_index_and_field_and_its_neighbours_are_parsed(
    bad: dict[str, Any], field: str
) -> None:
    parsed = parse_json(body([reading(value=1.0), bad, reading(value=3.0)]), max_items=10)

    assert parsed.count == 3
    assert fields(parsed) == {1: field}
    assert [(i, item.value) for i, item in parsed.items] == [(0, 1.0), (2, 3.0)]


def test_a_single_invalid_object_is_reported_as_item_zero() -> None:
    parsed = parse_json(body(reading(value="high")), max_items=10)

    assert parsed.items == []
    assert fields(parsed) == {0: "value"}


def test_an_array_item_that_is_not_an_object_is_refused_alone() -> None:
    parsed = parse_json(body([reading(value=1.0), 42]), max_items=10)

    assert [e.index for e in parsed.errors] == [1]
    assert [i for i, _ in parsed.items] == [0]


def test_every_invalid_item_of_an_array_is_reported() -> None:
    parsed = parse_json(
        body([reading(value="x"), reading(), reading(unti="ppm"), reading(site=None)]), max_items=10
    )

    assert fields(parsed) == {0: "value", 2: "unti", 3: "site"}
    assert [i for i, _ in parsed.items] == [1]


def test_an_invalid_ndjson_line_names_its_index_and_field_and_the_others_are_parsed() -> None:
    parsed = parse_ndjson(ndjson(reading(value=1.0), reading(value="x"), reading(device="a b")), 10)

    assert fields(parsed) == {1: "value", 2: "device"}
    assert [(i, item.value) for i, item in parsed.items] == [(0, 1.0)]


# ---------------------------------------------------------------- hostile and odd bodies


@pytest.mark.parametrize("parse", [parse_json, parse_ndjson])
@pytest.mark.parametrize("depth", [1_000, 10_000])
def test_deeply_nested_json_is_a_malformed_body_not_a_crash(parse: Any, depth: int) -> None:
    # 2 kB of brackets once reached msgspec's recursion guard and left as a 500.
    with pytest.raises(MalformedBody, match="nested too deeply"):
        parse(b"[" * depth + b"]" * depth, max_items=10)


def test_a_deep_object_is_a_malformed_body() -> None:
    deep = b'{"a":' * 2_000 + b"1" + b"}" * 2_000

    with pytest.raises(MalformedBody, match="nested too deeply"):
        parse_json(deep, max_items=10)


@pytest.mark.parametrize(
    "text",
    [
        b'{"site":"ulsan-refinery","device":"gd-cdu1-101","kind":"gas.h2s","value":1e400}',
        b'[{"site":"ulsan-refinery","device":"gd-cdu1-101","kind":"gas.h2s","value":1e400}]',
    ],
)
def test_a_number_too_large_for_a_float_is_an_item_error_naming_value(text: bytes) -> None:
    parse = parse_ndjson if text.startswith(b"{") else parse_json
    for decoded in (parse_json(text, max_items=10), parse(text, max_items=10)):
        [error] = decoded.errors
        assert error.field == "value"
        assert error.detail.startswith("value must be a number")


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"value": "high"}, "value", "value must be a number (got a string)"),
        ({"quality": "ok"}, "quality", "quality must be one of good, uncertain, bad"),
        ({"confidence": 1.5}, "confidence", "confidence must be a number from 0 to 1"),
        ({"attributes": {"": "x"}}, "attributes", "attributes must be an object of at most 32"),
        ({"attributes": {"a\x00": "x"}}, "attributes", "a name of 1 to 64 characters"),
        ({"attributes": {"model": 7}}, "attributes", "(got a number)"),
        ({"box": {"x": 0.1, "y": 0.1, "width": 0.1}}, "box.height", "box.height is required"),
        ({"box": {"x": 2, "y": 0, "width": 0, "height": 0}}, "box.x", "box.x must be a number from 0 to 1"),
        ({"colour": "red"}, "colour", "unknown field 'colour'; the fields are site, device"),
        ({"site": None}, "site", "site is required"),
        ({"time": "yesterday"}, "time", "time must be an RFC 3339 time with a UTC offset"),
    ],
)
def test_item_errors_name_the_field_and_say_what_it_takes(
    changes: dict[str, Any], field: str, words: str
) -> None:
    parsed = parse_json(body([reading(**changes)]), max_items=10)

    [error] = parsed.errors
    assert error.field == field
    assert words in error.detail
    assert "Expected `" not in error.detail and "Invalid enum" not in error.detail


def test_an_item_that_is_not_an_object_says_so() -> None:
    parsed = parse_json(b"[[1], 7]", max_items=10)

    assert [(e.field, e.detail) for e in parsed.errors] == [
        ("", "each item must be a JSON object (one observation), not an array"),
        ("", "each item must be a JSON object (one observation), not a number"),
    ]
