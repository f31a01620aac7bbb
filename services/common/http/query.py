"""Query parameters every API reads the same way: times (RFC 3339 with an offset)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from services.common.http.problem import invalid_query

# A `+` in a query string reaches the handler as a space unless the client encoded it.
_SPACED_OFFSET = re.compile(r"^(?P<moment>.+\d) (?P<offset>\d{2}:\d{2})\Z")
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})\Z", re.ASCII
)
TIME_HINT = "expected an RFC 3339 time with an offset, such as 2026-11-22T09:00:00+09:00"


def parse_time(parameter: str, raw: str) -> datetime:
    """An aware datetime from an RFC 3339 time; 400 naming `parameter` otherwise."""
    raw = _SPACED_OFFSET.sub(r"\g<moment>+\g<offset>", raw)
    if not _RFC3339.match(raw):
        raise invalid_query(parameter, TIME_HINT)
    raw = re.sub(r"(\.\d{6})\d+", r"\1", raw)
    try:
        moment = datetime.fromisoformat(raw.replace("z", "Z"))
        moment.astimezone(UTC)
    except (ValueError, OverflowError) as err:
        raise invalid_query(parameter, f"not a time that exists; {TIME_HINT}") from err
    return moment
