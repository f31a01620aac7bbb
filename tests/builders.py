"""Builders of test data shared by several test modules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from services.ingest.domain.contract import ObservationIn

KST = timezone(timedelta(hours=9))
MEASURED = datetime(2026, 11, 22, 9, 15, 0, 123456, tzinfo=KST)
RECEIVED = datetime(2026, 11, 22, 0, 15, 1, 500000, tzinfo=UTC)


def observation(**changes: Any) -> ObservationIn:
    """An H2S reading of the refinery's first CDU detector, with any field changed."""
    fields: dict[str, Any] = {
        "site": "ulsan-refinery",
        "device": "gd-cdu1-101",
        "kind": "gas.h2s",
        "value": 12.5,
        "unit": "ppm",
        "time": MEASURED,
    }
    fields.update(changes)
    return ObservationIn(**fields)
