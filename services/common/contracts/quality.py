"""The one mapping between the proto `Quality` enum and its names in JSON.

A client posts `good` (or the proto3 JSON name `QUALITY_GOOD`); the bus and the store carry the
enum's number; the API answers `good`. The names are derived from the enum itself, so a value
added to `observation.proto` is mapped everywhere without a second table to forget.
"""

from __future__ import annotations

from services.common.contracts import Quality

_PREFIX = "QUALITY_"

# 1 -> "good", ..., 0 -> "unspecified": what the API answers.
_NAMES: dict[int, str] = {number: name.removeprefix(_PREFIX).lower() for name, number in Quality.items()}
# "good" and "QUALITY_GOOD" -> 1: what a client may send (any but "unspecified").
_NUMBERS: dict[str, Quality.ValueType] = {
    spelling: number
    for name, number in Quality.items()
    if number != Quality.QUALITY_UNSPECIFIED
    for spelling in (name.removeprefix(_PREFIX).lower(), name)
}
UNSPECIFIED = _NAMES[Quality.QUALITY_UNSPECIFIED]
# The names a client may send (the ingest contract's `QualityName` lists them for the decoder).
ACCEPTED = frozenset(_NUMBERS)


def quality_name(number: int) -> str:
    """The JSON name of a stored quality; "unspecified" for a number this build does not know."""
    return _NAMES.get(number, UNSPECIFIED)


def quality_number(name: str) -> Quality.ValueType:
    """The enum value of a name a client may send (one of `ACCEPTED`; KeyError otherwise)."""
    return _NUMBERS[name]
