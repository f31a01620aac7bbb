"""The `escalation:` section of the hub's config."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from services.common.settings import Positive, PositiveFloat
from services.escalation.domain.retry import STANDARD_SCHEDULE_S
from services.escalation.formats import CapOrigin

# The incident changes there are (proto/safetyhub/v1/incident.proto, TimelineEntry.change): a name
# outside them in the config stops start-up with file, line and key instead of matching nothing.
ChangeName = Literal[
    "opened",
    "joined",
    "raised",
    "returned",
    "acknowledged",
    "assigned",
    "dispatched",
    "resolved",
    "closed",
    "reopened",
    "commented",
    "merged",
]
DEFAULT_CHANGES: tuple[ChangeName, ...] = (
    "opened",
    "raised",
    "acknowledged",
    "dispatched",
    "resolved",
    "closed",
    "reopened",
)


class EscalationConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # The incident changes delivered to endpoints (others, such as an alarm joining, are not).
    changes: list[ChangeName] = msgspec.field(default_factory=lambda: list(DEFAULT_CHANGES))
    # Delays before the 2nd, 3rd, ... attempt, in seconds (Standard Webhooks' by default); after
    # the last the delivery is dead.
    retry_schedule_s: list[Annotated[float, msgspec.Meta(ge=0)]] = msgspec.field(
        default_factory=lambda: list(STANDARD_SCHEDULE_S)
    )
    connect_timeout_s: PositiveFloat = 5.0
    total_timeout_s: PositiveFloat = 15.0
    # Attempts in flight to one endpoint from one process: a slow endpoint holds only its own.
    endpoint_concurrency: Positive = 8
    # Failed attempts in a row that open an endpoint's circuit breaker, and for how long.
    breaker_failures: Positive = 5
    breaker_cooldown_s: PositiveFloat = 30.0
    # A due delivery is looked for at least this often (a commit's notification wakes it sooner).
    poll_interval_s: PositiveFloat = 0.5
    # Deliveries claimed per pass.
    claim_batch: Positive = 200
    # The consumer of INCIDENTS.
    batch_max: Positive = 500
    batch_wait_ms: Positive = 5
    max_ack_pending: Positive = 10_000
    ack_wait_s: PositiveFloat = 30.0
    # Who CAP alerts come from: <sender> (an address or URN, no spaces or commas), <senderName>
    # (the site's name when empty) and <web> ("{incident_id}" stands for the incident's id).
    cap: CapOrigin = msgspec.field(default_factory=lambda: CapOrigin(sender="safetyhub@localhost"))
    # How long a notification's acknowledgement link stays usable, in hours (a link is made only
    # when `http.public_url` is set).
    ack_link_ttl_h: PositiveFloat = 24.0
