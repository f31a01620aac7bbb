"""What every service reads the same way: ids, kinds and qualities, and where a decoding error points."""

from __future__ import annotations

from typing import Any, get_args

import msgspec
import pytest

from services.common.contracts import Quality
from services.common.contracts.quality import ACCEPTED, quality_name, quality_number
from services.common.sites.model import Device, Measure, Tenant
from services.common.validation import dotted, locate
from services.ingest.domain.contract import ObservationIn, QualityName

SLUGS = ["acme", "a", "ulsan-refinery", "9lives", "x" * 63, "x" * 64, "Acme", "-acme", "ac.me", "ac me", ""]
DEVICES = ["gd-101", "GD_101", "A", "d" * 63, "d" * 64, "_gd", "gd.101", "gd 101", ""]
KINDS = ["gas.h2s", "temperature", "flame.ir2", "a" * 63, "a" * 64, "Gas.h2s", "gas.", ".gas", "gas..h2s", ""]


def accepted(type_: type[Any], value: dict[str, Any]) -> bool:
    try:
        msgspec.convert(value, type_)
    except msgspec.ValidationError:
        return False
    return True


def posted(**fields: str) -> bool:
    return accepted(ObservationIn, {"site": "acme", "device": "gd-101", "kind": "gas.h2s", **fields})


@pytest.mark.parametrize("slug", SLUGS)
def test_a_site_file_and_an_observation_accept_the_same_site_ids(slug: str) -> None:
    assert accepted(Tenant, {"id": slug, "name": "Acme"}) == posted(site=slug)


@pytest.mark.parametrize("device", DEVICES)
def test_a_site_file_and_an_observation_accept_the_same_device_ids(device: str) -> None:
    declared = {"id": device, "zone": "z", "type": "gas_detector", "position": {"lat": 0, "lon": 0}}
    declared["measures"] = [{"kind": "gas.h2s", "unit": "ppm"}]
    assert accepted(Device, declared) == posted(device=device)


@pytest.mark.parametrize("kind", KINDS)
def test_a_kind_a_site_file_declares_is_one_a_gateway_can_post(kind: str) -> None:
    # Before, a site file could declare a 64-character kind no observation could ever carry.
    assert accepted(Measure, {"kind": kind, "unit": "ppm"}) == posted(kind=kind)


def test_every_quality_a_client_sends_is_stored_and_answered_by_the_same_name() -> None:
    assert set(get_args(QualityName)) == ACCEPTED
    for name in ACCEPTED:
        short = name.removeprefix("QUALITY_").lower()
        assert quality_name(quality_number(name)) == short
    assert quality_number("good") == Quality.QUALITY_GOOD
    assert quality_number("QUALITY_BAD") == Quality.QUALITY_BAD


def test_a_stored_quality_is_answered_by_its_name_or_unspecified() -> None:
    assert [quality_name(n) for n in (0, 1, 2, 3, 99)] == [
        "unspecified",
        "good",
        "uncertain",
        "bad",
        "unspecified",
    ]
    with pytest.raises(KeyError):
        quality_number("unspecified")  # a client says nothing rather than "unspecified"


class Box(msgspec.Struct, forbid_unknown_fields=True):
    x: float


class Item(msgspec.Struct, forbid_unknown_fields=True):
    site: str
    box: Box | None = None
    attributes: dict[str, int] = {}
    tags: list[Box] = []


def error_of(value: Any) -> msgspec.ValidationError:
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert(value, Item)
    return info.value


def test_a_bad_value_is_located_by_its_path() -> None:
    located = locate(error_of({"site": "a", "tags": [{"x": 1}, {"x": "far"}]}))
    assert (located.message, located.location, located.path) == (
        "Expected `float`, got `str`",
        "tags[1].x",
        ("tags", 1, "x"),
    )
    assert dotted(located.path) == "tags.x"


def test_an_unknown_or_missing_field_is_named_under_its_object() -> None:
    unknown = locate(error_of({"site": "a", "box": {"x": 1, "y": 2}}))
    assert (unknown.path, unknown.unknown, unknown.field) == (("box",), "y", ("box", "y"))
    missing = locate(error_of({"box": {"x": 1}}))
    assert (missing.location, missing.missing, missing.field) == ("", "site", ("site",))


def test_a_mapping_value_or_key_is_located_at_the_mapping() -> None:
    value = locate(error_of({"site": "a", "attributes": {"k": "v"}}))
    assert (value.location, value.path, value.in_key) == ("attributes[...]", ("attributes",), False)
    key = locate(msgspec.ValidationError("Expected `str` of length <= 64 - at `key` in `$.attributes`"))
    assert (key.location, key.path, key.in_key) == ("attributes", ("attributes",), True)


def test_an_error_about_the_document_itself_has_no_location() -> None:
    located = locate(error_of(5))
    assert (located.message, located.location, located.path) == ("Expected `object`, got `int`", "", ())
