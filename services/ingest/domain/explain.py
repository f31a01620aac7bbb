"""Say in a gateway author's words what a field allows, instead of the decoder's type notation.

msgspec reports `Expected `float | null`, got `str`` or `Invalid enum value 'ok'`: true, but in
Python's vocabulary. A person reading a 422 wants to know what to send instead, so each field of
`ObservationIn` has one sentence saying what it takes, and the decoder's message only chooses
between "missing", "unknown" and "not what the field takes" (with what was sent, when known).
"""

from __future__ import annotations

import re

from services.common.validation import Located, dotted

_FRACTION = "a number from 0 to 1"
_CLIENT_ID = "a string of 1 to 128 letters, digits or . _ : @ / -"

# What each field takes, as a user would say it.
ALLOWED: dict[str, str] = {
    "site": "a site id: 1 to 63 lower-case letters, digits or '-', starting with a letter or digit",
    "device": "a device id: 1 to 63 letters, digits, '_' or '-', starting with a letter or digit",
    "kind": "a kind such as gas.h2s: lower-case words (letters, digits, '_') joined by '.',"
    " at most 63 characters",
    "id": _CLIENT_ID,
    "correlationId": _CLIENT_ID,
    "time": "an RFC 3339 time with a UTC offset, such as 2026-11-22T09:15:00+09:00",
    "value": "a number",
    "unit": "a unit of 1 to 32 characters, such as ppm",
    "quality": "one of good, uncertain, bad (or QUALITY_GOOD, QUALITY_UNCERTAIN, QUALITY_BAD)",
    "confidence": _FRACTION,
    "box": "an object with x, y, width and height",
    "box.x": _FRACTION + " (a fraction of the frame's width)",
    "box.y": _FRACTION + " (a fraction of the frame's height)",
    "box.width": _FRACTION + " (a fraction of the frame's width)",
    "box.height": _FRACTION + " (a fraction of the frame's height)",
    "snapshot": "a reference (URI) of at most 2048 characters",
    "position": "an object with latitude and longitude, and optionally altitude",
    "position.latitude": "a number from -90 to 90",
    "position.longitude": "a number from -180 to 180",
    "position.altitude": "a number (metres)",
    "attributes": "an object of at most 32 attributes, each a name of 1 to 64 characters and a string"
    " value of at most 256 characters",
}
_FIELDS = {
    "": "site, device, kind, id, time, value, unit, quality, confidence, box, snapshot, position,"
    " attributes, correlationId",
    "box": "x, y, width, height",
    "position": "latitude, longitude, altitude",
}
_TYPES = {
    "str": "a string",
    "int": "a number",
    "float": "a number",
    "bool": "true or false",
    "null": "null",
    "array": "an array",
    "object": "an object",
}
_GOT = re.compile(r"got `([a-z]+)`")


def explain(err: Located) -> tuple[str, str]:
    """The field at fault (dotted; "" for the item itself) and what is wrong, from a msgspec
    validation error such as ``Expected `float` <= 1.0 - at `$.box.x` ``."""
    text = err.message
    # "$.attributes[...]" (a value) and "key` in `$.attributes" (a name) are both about attributes.
    where = dotted(err.path)
    if err.unknown is not None:
        known = _FIELDS.get(where, "")
        return dotted(err.field), f"unknown field '{err.unknown}'" + (
            f"; the fields are {known}" if known else ""
        )
    if err.missing is not None:
        field = dotted(err.field)
        return field, f"{field} is required: {ALLOWED.get(field, 'a value')}"
    if not where:
        got = _GOT.search(text)
        sent = f", not {_TYPES.get(got.group(1), got.group(1))}" if got else ""
        return "", f"each item must be a JSON object (one observation){sent}"
    allowed = ALLOWED.get(where)
    if allowed is None:  # a field this table does not know yet: better the raw message than none
        return where, text
    got = _GOT.search(text)
    if got:
        sent = f" (got {_TYPES.get(got.group(1), got.group(1))})"
    elif text.startswith("Invalid enum value"):
        sent = f" (got {text.removeprefix('Invalid enum value ')})"
    elif text == "Number out of range":
        sent = " (got a number too large to hold)"
    else:
        sent = ""
    return where, f"{where} must be {allowed}{sent}"
