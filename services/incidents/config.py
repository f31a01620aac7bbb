"""The `incidents:` section of the hub's config."""

from __future__ import annotations

from typing import Annotated

import msgspec

from services.common.settings import Positive, PositiveFloat
from services.incidents.domain.rules import FusionRule


class IncidentsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # The fusion rules, tried in order (see domain/rules.py); unset: the defaults there. Invalid
    # rules stop start-up with file, line and key, like every other config key.
    fusion_rules: list[FusionRule] | None = None
    # One unit of work (one PostgreSQL transaction) fuses at most batch_max alarm messages.
    batch_max: Positive = 500
    batch_max_kb: Positive = 1_024
    # 0: a batch is what arrived while the previous unit of work ran; an alarm arriving alone is
    # fused at once instead of waiting for company (fusion's cost grows with sites, not messages).
    batch_wait_ms: Annotated[int, msgspec.Meta(ge=0)] = 0
    max_ack_pending: Positive = 10_000
    ack_wait_s: PositiveFloat = 30.0
    # The live stream (GET /v1/stream): a comment line this often keeps idle connections open
    # through proxies; a client this many changes behind is told so and disconnected (it resumes
    # with Last-Event-ID from the stream, not from this process's memory); a client that takes
    # no bytes for this long is let go.
    stream_heartbeat_s: PositiveFloat = 15.0
    stream_queue_max: Positive = 1_000
    stream_write_timeout_s: PositiveFloat = 30.0
