"""The `store:` section of the hub's config."""

from __future__ import annotations

from typing import Annotated

import msgspec

from services.common.settings import Positive, PositiveFloat


class StoreConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # One write (COPY + INSERT, one transaction) takes at most batch_max bus messages and
    # batch_max_kb of their payload; a message may carry many observations of one device.
    batch_max: Positive = 5_000
    batch_max_kb: Positive = 2_048
    batch_wait_ms: Positive = 20
    max_ack_pending: Positive = 10_000
    ack_wait_s: PositiveFloat = 30.0
    # Days of observation history kept in PostgreSQL; older daily partitions are dropped whole.
    # 0 keeps everything. The stream keeps its own, shorter window (bus.observations.max_age_hours).
    retention_days: Annotated[int, msgspec.Meta(ge=0)] = 30
