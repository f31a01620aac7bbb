"""The `feed:` section of the hub's config: the sharing policies written in YAML, the consumers'
batching, the timers' poll, and the NGSI-LD context broker."""

from __future__ import annotations

from typing import Annotated

import msgspec

from services.common.settings import Positive, PositiveFloat
from services.common.types import Slug
from services.feed.domain.policy import SharingPolicy


class SitePolicy(SharingPolicy, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A site's sharing policy in the config file. At start-up it becomes the site's policy in
    force when it differs from the one the config set last (a policy set through the API since
    stays in force until the config changes it)."""

    tenant: Slug
    site: Slug


class NgsiConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The NGSI-LD context broker shared incidents are upserted to as `Alert` entities."""

    # The broker's base URL; entities go to <url>/ngsi-ld/v1/entityOperations/upsert.
    url: Annotated[str, msgspec.Meta(pattern="^https?://")]
    # Sent as `NGSILD-Tenant` when set (a multi-tenant broker such as the City Data Hub's).
    tenant: str | None = None
    # Entities per upsert request (the changes of one incident in a batch are one entity).
    batch_max: Annotated[int, msgspec.Meta(gt=0, le=1000)] = 100
    timeout_s: PositiveFloat = 10.0
    # A broker that is down or answers 5xx is retried after 1 s, doubling up to this.
    retry_max_s: PositiveFloat = 300.0
    poll_ms: Positive = 500


class FeedConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # Per tenant and site; a site without one shares nothing.
    policies: list[SitePolicy] = msgspec.field(default_factory=list)
    # One unit of work (one PostgreSQL transaction) projects at most batch_max messages.
    batch_max: Positive = 500
    batch_max_kb: Positive = 1_024
    batch_wait_ms: Positive = 20
    max_ack_pending: Positive = 10_000
    ack_wait_s: PositiveFloat = 30.0
    # Delayed events and closed hours are rows with a due time; the scheduler looks this often.
    timer_poll_ms: Positive = 500
    # An hour's counts leave this long after the hour ends, so alarms that arrive a little late
    # are still counted in it.
    counts_grace_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 60.0
    # Unset: no NGSI-LD export (FEED only).
    ngsi: NgsiConfig | None = None
