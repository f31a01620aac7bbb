"""What every way into the hub does with an observation once it is decoded: check it against the
site registry and build its bus messages. `POST /v1/observations` and the protocol bridges share
it, so a reading gets the same checks, ids, dedup and contract whichever way it came in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.common.sites.registry import SiteRegistry
from services.ingest.config import IngestConfig
from services.ingest.domain.checks import ItemError, check
from services.ingest.domain.contract import ObservationIn
from services.ingest.encode import HEADER_ROOM, Encoded, encode_observations


@dataclass(frozen=True, slots=True)
class Limits:
    max_future: timedelta
    # Observations older than the store keeps are refused (None: the store keeps everything).
    max_age: timedelta | None

    @classmethod
    def of(cls, config: IngestConfig) -> Limits:
        return cls(
            timedelta(seconds=config.max_future_s),
            timedelta(days=config.max_age_days) if config.max_age_days > 0 else None,
        )


@dataclass(slots=True)
class Checked:
    valid: list[ObservationIn] = field(default_factory=list)
    # The index (in the request or message) of each valid item.
    positions: list[int] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)


def check_all(
    items: Iterable[tuple[int, ObservationIn]], registry: SiteRegistry, now: datetime, limits: Limits
) -> Checked:
    """Each item checked (and completed from the registry), or the reason it is refused."""
    out = Checked()
    for index, item in items:
        result = check(item, index, registry, now, limits.max_future, max_age=limits.max_age)
        if isinstance(result, ItemError):
            out.errors.append(result)
        else:
            out.valid.append(result)  # completed from the registry (unit, out-of-range quality)
            out.positions.append(index)
    return out


def encode_checked(
    checked: Checked, *, tenant: str, source: str, received: datetime, max_payload: int
) -> Encoded:
    """The bus messages of the valid items; an item too large for one message joins the errors."""
    limit = max_payload - HEADER_ROOM
    encoded = encode_observations(
        checked.valid, tenant=tenant, source=source, received=received, max_payload=limit
    )
    checked.errors.extend(
        ItemError(
            checked.positions[oversized],
            "",
            f"the observation is too large for the event bus (at most {limit} bytes encoded)",
        )
        for oversized in encoded.oversized
    )
    checked.errors.sort(key=lambda e: e.index)
    return encoded
