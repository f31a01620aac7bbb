"""Turn a request body into typed observations and per-item errors. Pure, no I/O.

Accepted bodies: one JSON object, a JSON array of objects, or NDJSON (one object per line). The
whole array is decoded in one call when it is valid (the common case), first the cheap way
(screen.py); only when that finds anything wrong is it decoded the strict way, and items one by
one, so each error names its item index and field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from services.common.errors import SafetyhubError
from services.common.validation import locate
from services.ingest.domain.checks import ItemError
from services.ingest.domain.contract import ObservationIn
from services.ingest.domain.explain import explain
from services.ingest.domain.screen import MANY as _SCREENED_MANY
from services.ingest.domain.screen import ONE as _SCREENED_ONE
from services.ingest.domain.screen import screen

_ONE = msgspec.json.Decoder(ObservationIn)
_MANY = msgspec.json.Decoder(list[ObservationIn])
_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])
# Checks the syntax only: numbers are not converted, so 1e400 is well-formed JSON here (and a
# field error later), not a malformed body.
_SYNTAX = msgspec.json.Decoder(msgspec.Raw)
_TOO_DEEP = "the JSON is nested too deeply; an observation is at most three levels deep"


class MalformedBody(SafetyhubError):
    """The body is not JSON / NDJSON at all (HTTP 400)."""


class TooManyItems(SafetyhubError):
    """More items than one request may carry (HTTP 413)."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"the request carries {count} items; at most {limit} are accepted per request")


@dataclass(slots=True)
class Parsed:
    items: list[tuple[int, ObservationIn]] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)
    count: int = 0


def item_error(index: int, err: msgspec.ValidationError) -> ItemError:
    field, detail = explain(locate(err))
    return ItemError(index, field, detail)


def _raise_if_malformed(raw: bytes, *, where: str = "") -> None:
    """Typed decoding stops at the first bad field, before it would see a syntax error further
    on; a body that is not JSON at all must be reported as such (400), not as a bad field (422).
    Only runs on the error path, so valid requests do not pay for it."""
    try:
        _SYNTAX.decode(raw)
    except msgspec.DecodeError as err:
        raise MalformedBody(f"{where}malformed JSON: {err}") from err


def _decode_each(raw_items: list[bytes], parsed: Parsed) -> None:
    for index, raw in enumerate(raw_items):
        try:
            parsed.items.append((index, _ONE.decode(raw)))
        except msgspec.ValidationError as err:
            parsed.errors.append(item_error(index, err))
        except msgspec.DecodeError as err:
            parsed.errors.append(ItemError(index, "", f"malformed JSON: {err}"))


def parse_json(body: bytes, max_items: int) -> Parsed:
    try:
        return _parse_json(body, max_items)
    except RecursionError as err:  # msgspec guards its stack; a 2 kB "[[[[..." reaches the limit
        raise MalformedBody(_TOO_DEEP) from err


def parse_ndjson(body: bytes, max_items: int) -> Parsed:
    try:
        return _parse_ndjson(body, max_items)
    except RecursionError as err:
        raise MalformedBody(_TOO_DEEP) from err


def _screened(body: bytes, start: bytes, max_items: int) -> Parsed | None:
    """The items of a valid body decoded the cheap way; None when anything is wrong with it."""
    try:
        items = [_SCREENED_ONE.decode(body)] if start == b"{" else _SCREENED_MANY.decode(body)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return None
    if len(items) > max_items or not screen(items):
        return None
    return Parsed(items=list(enumerate(items)), count=len(items))


def _parse_json(body: bytes, max_items: int) -> Parsed:
    start = body.lstrip()[:1]
    if start in (b"{", b"[") and (parsed := _screened(body, start, max_items)) is not None:
        return parsed
    parsed = Parsed()
    if start == b"{":
        parsed.count = 1
        try:
            parsed.items.append((0, _ONE.decode(body)))
        except msgspec.ValidationError as err:
            _raise_if_malformed(body)
            parsed.errors.append(item_error(0, err))
        except msgspec.DecodeError as err:
            raise MalformedBody(f"malformed JSON: {err}") from err
        return parsed
    if start != b"[":
        _raise_if_malformed(body)
        raise MalformedBody("the body must be a JSON object or an array of objects")
    try:
        raw_items = _RAW_LIST.decode(body)
    except msgspec.DecodeError as err:
        raise MalformedBody(f"malformed JSON: {err}") from err
    except msgspec.ValidationError as err:  # e.g. "[1, 2" is a decode error; "[]" fine
        raise MalformedBody(str(err)) from err
    parsed.count = len(raw_items)
    if parsed.count > max_items:
        raise TooManyItems(parsed.count, max_items)
    try:
        parsed.items = list(enumerate(_MANY.decode(body)))
    except msgspec.ValidationError:
        _decode_each([bytes(r) for r in raw_items], parsed)
    return parsed


def _parse_ndjson(body: bytes, max_items: int) -> Parsed:
    lines = [line for line in body.split(b"\n") if line.strip()]
    if len(lines) > max_items:
        raise TooManyItems(len(lines), max_items)
    parsed = Parsed(count=len(lines))
    for index, line in enumerate(lines):
        try:
            parsed.items.append((index, _ONE.decode(line)))
        except msgspec.ValidationError as err:
            _raise_if_malformed(line, where=f"line {index + 1}: ")
            parsed.errors.append(item_error(index, err))
        except msgspec.DecodeError as err:
            raise MalformedBody(f"line {index + 1}: malformed JSON: {err}") from err
    return parsed
