"""A shared projection as a FEED message: a CloudEvent in JSON, ready for `UnitOfWork.emit`.

The event's id is derived from the message it was projected from (an incident change's id, an
alarm transition's id, a site's zone-hour), so projecting a redelivered message again, or relaying
the outbox twice, sends the same id and JetStream keeps the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from services.common.bus.publisher import OutgoingMessage
from services.common.contracts.cloudevents import MSG_ID, SPEC_VERSION
from services.common.contracts.ids import derived_id
from services.feed.channel import CONTENT_TYPE, FEED_CHANNEL, FeedEvent
from services.feed.domain.policy import Kind
from services.feed.domain.projection import Shared, rfc3339

SOURCE = "/feed"


def event_type(kind: Kind) -> str:
    return f"org.safetyhub.feed.{kind}.v1"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One FEED event: its CloudEvent and the bus message carrying it."""

    event: FeedEvent
    message: OutgoingMessage

    @property
    def id(self) -> str:
        return self.event.id

    @property
    def time(self) -> str:
        return self.event.time

    @property
    def body(self) -> dict[str, Any]:
        return msgspec.to_builtins(self.event)  # type: ignore[no-any-return]


def feed_event(
    kind: Kind,
    shared: Shared,
    *,
    tenant: str,
    site: str,
    source_id: str,
    at: datetime,
    policy_version: int,
) -> Outgoing:
    event_id = derived_id(int(at.timestamp() * 1000), "feed", str(kind), tenant, site, source_id)
    subject = FEED_CHANNEL.subject(tenant, site, str(kind))
    event = FeedEvent(
        specversion=SPEC_VERSION,
        id=event_id,
        source=f"{SOURCE}/{tenant}/{site}",
        type=event_type(kind),
        time=rfc3339(at),
        subject=str(shared.get("id") or shared.get("zone") or ""),
        datacontenttype="application/json",
        tenant=tenant,
        site=site,
        policyversion=policy_version,
        data=shared,
    )
    headers = {MSG_ID: event_id, "Content-Type": CONTENT_TYPE}
    return Outgoing(event, OutgoingMessage(subject, msgspec.json.encode(event), headers))
