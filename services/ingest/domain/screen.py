"""Decoding a valid post for less: the same checks as `ObservationIn`, the id patterns paid once.

msgspec checks a `pattern` with a regex search on every string it decodes: five of them per
reading (site, device, kind, id, unit), most of the cost of decoding a post. The site, device,
kind and unit of a gateway's readings repeat from item to item and from post to post, so here
the body is decoded into `Screened`, which is `ObservationIn` with those fields checked for length
only, and each field is then searched with the very same pattern, the repeating ones remembered
once found valid. A body that fails anything here is decoded again the strict way (parse.py), so
every refusal names its item and field exactly as before; only valid posts take this path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

import msgspec

from services.common.types import CLIENT_ID_PATTERN, DEVICE_ID_PATTERN, KIND_PATTERN, SLUG_PATTERN
from services.ingest.domain.contract import NO_NUL, ObservationIn

# What each field of ObservationIn accepts, less its pattern (checked in `screen`).
_Site = Annotated[str, msgspec.Meta(min_length=1, max_length=63)]
_Device = Annotated[str, msgspec.Meta(min_length=1, max_length=63)]
_Kind = Annotated[str, msgspec.Meta(max_length=63)]
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Unit = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class Screened(ObservationIn, frozen=True, kw_only=True):
    """An `ObservationIn` whose patterned fields `screen` has yet to check (or has checked)."""

    site: _Site
    device: _Device
    kind: _Kind
    id: _Id | None = None
    unit: _Unit | None = None
    correlation_id: _Id | None = msgspec.field(default=None, name="correlationId")


ONE = msgspec.json.Decoder(Screened)
MANY = msgspec.json.Decoder(list[Screened])

# Bounded: a client may send any number of distinct (invalid or valid) names; past this the
# remembered ones are forgotten and found again.
_REMEMBER = 4_096


def _remembering(pattern: str) -> Callable[[str], bool]:
    search = re.compile(pattern).search
    valid: set[str] = set()

    def check(value: str) -> bool:
        if value in valid:
            return True
        if search(value) is None:
            return False
        if len(valid) >= _REMEMBER:
            valid.clear()
        valid.add(value)
        return True

    return check


_site_ok = _remembering(SLUG_PATTERN)
_device_ok = _remembering(DEVICE_ID_PATTERN)
_kind_ok = _remembering(KIND_PATTERN)
_unit_ok = _remembering(NO_NUL)
# Observation ids are new in nearly every item: searched each time, nothing remembered.
_id_search = re.compile(CLIENT_ID_PATTERN).search


def screen(items: list[Screened]) -> bool:
    """Whether every item's patterned fields match their patterns (as `ObservationIn` asks)."""
    site_ok, device_ok, kind_ok, unit_ok, id_search = _site_ok, _device_ok, _kind_ok, _unit_ok, _id_search
    for item in items:
        if not (site_ok(item.site) and device_ok(item.device) and kind_ok(item.kind)):
            return False
        if item.id is not None and id_search(item.id) is None:
            return False
        if item.unit is not None and not unit_ok(item.unit):
            return False
        if item.correlation_id is not None and id_search(item.correlation_id) is None:
            return False
    return True
