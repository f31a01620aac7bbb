"""Builders of test data shared by several test modules."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from services.ingest.domain.contract import ObservationIn
from tests.conftest import DEMO_SITES, EXTRA_SITE

KST = timezone(timedelta(hours=9))
MEASURED = datetime(2026, 11, 22, 9, 15, 0, 123456, tzinfo=KST)
RECEIVED = datetime(2026, 11, 22, 0, 15, 1, 500000, tzinfo=UTC)


# Posted readings are an hour old: inside the history the hub keeps, never in the future.
RECENT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def reading(n: int = 0, **fields: Any) -> dict[str, Any]:
    """The JSON of an H2S reading of the refinery's first CDU detector, `n` seconds after RECENT."""
    item: dict[str, Any] = {
        "site": "ulsan-refinery",
        "device": "gd-cdu1-101",
        "kind": "gas.h2s",
        "unit": "ppm",
        "value": 1.5 + n,
        "time": (RECENT + timedelta(seconds=n)).isoformat(),
    }
    item.update(fields)
    return item


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


_EAST_DETECTOR = """
      - id: gd-hcr1-102
        zone: hcr-1
        type: gas_detector
        position: {lat: 35.4701, lon: 129.3701}
        measures:
          - {kind: gas.h2s, unit: ppm, range: [0, 100]}
"""


def copy_site_files(folder: Path) -> Path:
    """The demo sites and the east-site fixture (whose tenant the demo declares) in a new
    `folder`, to be edited; returns the east site's file."""
    folder.mkdir()
    shutil.copy(DEMO_SITES, folder / "demo.yaml")
    shutil.copy(EXTRA_SITE, folder / "east.yaml")
    return folder / "east.yaml"


def replace_in(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new, 1))


def add_east_detector(east: Path) -> None:
    """Register H2S detector gd-hcr1-102 at the east site."""
    replace_in(east, "devices:\n", "devices:" + _EAST_DETECTOR)
