"""The cheap decoding of a valid post accepts exactly what `ObservationIn` accepts, field for field."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.domain.contract import ObservationIn
from services.ingest.domain.parse import parse_json
from services.ingest.domain.screen import Screened

STRICT = msgspec.json.Decoder(ObservationIn)


def _without_patterns(info: msgspec.inspect.Type) -> msgspec.inspect.Type:
    if isinstance(info, msgspec.inspect.StrType):
        return msgspec.structs.replace(info, pattern=None)
    if isinstance(info, msgspec.inspect.UnionType):
        return msgspec.structs.replace(info, types=tuple(_without_patterns(t) for t in info.types))
    return info


def test_screened_is_observation_in_less_the_patterns_it_checks_itself() -> None:
    strict = msgspec.inspect.type_info(ObservationIn)
    screened = msgspec.inspect.type_info(Screened)
    assert isinstance(strict, msgspec.inspect.StructType)
    assert isinstance(screened, msgspec.inspect.StructType)
    assert [f.encode_name for f in screened.fields] == [f.encode_name for f in strict.fields]
    assert screened.forbid_unknown_fields
    for mine, theirs in zip(screened.fields, strict.fields, strict=True):
        assert (mine.required, mine.default) == (theirs.required, theirs.default), mine.name
        if mine.type != theirs.type:  # only the fields screen() searches lose their pattern
            assert mine.name in {"site", "device", "kind", "id", "unit", "correlation_id"}
            assert mine.type == _without_patterns(theirs.type), mine.name


# Valid and invalid values alike: dots, capitals, spaces, U+0000, empty, too long.
_texts = st.one_of(
    st.sampled_from(["ulsan-refinery", "gd-cdu1-101", "GD_7", "gas.h2s", "ppm", "r-1:2@x/y.z", "%LEL"]),
    st.sampled_from(["", "a.b", "Gas.H2S", "-x", "x y", "a\x00b", "gas..h2s", "x" * 64, "é", "a\n"]),
    st.text(alphabet="aZ9.-_ :@/%\x00\né", max_size=10),
)


@st.composite
def _items(draw: st.DrawFn) -> dict[str, Any]:
    item: dict[str, Any] = {
        "site": draw(st.one_of(st.just("ulsan-refinery"), _texts)),
        "device": draw(st.one_of(st.just("gd-cdu1-101"), _texts)),
        "kind": draw(st.one_of(st.just("gas.h2s"), _texts)),
        "value": 4.5,
        "time": "2026-11-22T09:15:00+09:00",
    }
    for name in ("id", "unit", "correlationId"):
        if draw(st.booleans()):
            item[name] = draw(_texts)
    return item


# Generation is cheap; only a busy machine makes it look slow.
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_items(), max_size=6))
def test_a_post_is_accepted_item_by_item_as_observation_in_would(items: list[dict[str, Any]]) -> None:
    parsed = parse_json(msgspec.json.encode(items), max_items=10)

    accepted = dict(parsed.items)
    for index, item in enumerate(items):
        try:
            expected = STRICT.decode(msgspec.json.encode(item))
        except msgspec.ValidationError:
            assert index not in accepted
            assert index in {e.index for e in parsed.errors}
        else:
            assert msgspec.structs.asdict(accepted[index]) == msgspec.structs.asdict(expected)
    assert len(accepted) + len(parsed.errors) == len(items)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_items())
def test_a_single_object_is_accepted_as_observation_in_would(item: dict[str, Any]) -> None:
    parsed = parse_json(msgspec.json.encode(item), max_items=10)

    try:
        expected = STRICT.decode(msgspec.json.encode(item))
    except msgspec.ValidationError:
        assert parsed.items == []
        assert len(parsed.errors) == 1
    else:
        [(_, accepted)] = parsed.items
        assert msgspec.structs.asdict(accepted) == msgspec.structs.asdict(expected)
