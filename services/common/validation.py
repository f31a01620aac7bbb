"""Where a msgspec validation error points: the problem, and the path of the value at fault.

msgspec appends the location to its message as text: ``Expected `int` - at `$.sites[0].id` ``, or
``... - at `key` in `$.attributes` `` when a mapping key is at fault. Config loading names the
file, line and key from it; request parsing names the field. Both read it here, once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec

PathPart = str | int

_LOCATION = re.compile(r" - at (`key` in )?`\$([^`]*)`$")
_PART = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `(.*)`$", re.DOTALL)
_MISSING_FIELD = re.compile(r"^Object missing required field `(.*)`$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Located:
    """A validation error taken apart."""

    # msgspec's text without the location: "Expected `int`, got `str`".
    message: str
    # The location as msgspec wrote it, without `$.`: "sites[0].devices[3]", "limits[...]"; ""
    # for the document itself.
    location: str
    # The location parsed, up to the value of a mapping (`[...]`: msgspec does not say which key).
    path: tuple[PathPart, ...]
    # The fault is a key of the mapping at `path`, not a value.
    in_key: bool = False
    # The field named by "Object contains unknown field `x`" or "Object missing required field
    # `x`": a child of `path`, which is the object's.
    unknown: str | None = None
    missing: str | None = None

    @property
    def field(self) -> tuple[PathPart, ...]:
        """The path of the field at fault: the unknown or missing field itself when there is one."""
        name = self.unknown if self.unknown is not None else self.missing
        return self.path if name is None else (*self.path, name)


def locate(err: msgspec.ValidationError | str) -> Located:
    """Takes apart a msgspec validation error (or its text)."""
    text = str(err)
    found = _LOCATION.search(text)
    if found is None:
        message, location, in_key = text, "", False
    else:
        message, location, in_key = text[: found.start()], found.group(2), bool(found.group(1))
    path: list[PathPart] = []
    for name, index in _PART.findall(location):
        if index == "...":
            break
        path.append(int(index) if index else name)
    unknown = _UNKNOWN_FIELD.match(message)
    missing = _MISSING_FIELD.match(message)
    return Located(
        message=message,
        location=location.removeprefix("."),
        path=tuple(path),
        in_key=in_key,
        unknown=unknown.group(1) if unknown else None,
        missing=missing.group(1) if missing else None,
    )


def dotted(path: tuple[PathPart, ...]) -> str:
    """`("box", "x")` -> "box.x"; list indexes are left out (a field's name, not its place)."""
    return ".".join(part for part in path if isinstance(part, str))
