"""The FEED stream and its channel: what the city platform reads.

`feed.<tenant>.<site>.<incident|alarm|kpi>`: one CloudEvent (JSON, structured mode) per shared
incident change, shared alarm transition or zone-hour of counts, carrying the shared projection
only (domain/projection.py). JSON, not protobuf: the city's systems read it without our contracts.
Tenant and site lead, so the city filters a site; the kind is last, so `feed.*.*.incident`
follows every site's incidents. One site's events of a kind keep one subject, hence their order.
"""

from __future__ import annotations

from typing import Any

import msgspec

from services.common.bus.channel import Channel
from services.common.bus.consumer import Poison
from services.common.bus.streams import StreamDef
from services.common.settings import StreamConfig

# The city replays from a time or a sequence after an outage of its own: a month, as INCIDENTS.
FEED_DEFAULT_LIMITS = StreamConfig(max_age_hours=24.0 * 30)
CONTENT_TYPE = "application/cloudevents+json"

FEED = StreamDef(
    "FEED",
    ("feed.>",),
    "What the sharing policies let leave for the city: shared incidents, alarms and hourly counts",
    config_key="feed",
    default_limits=FEED_DEFAULT_LIMITS,
)


class FeedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A FEED message: a CloudEvent 1.0 in JSON (structured mode). `tenant`, `site` and
    `policyversion` are extension attributes: whose data it is and which version of that site's
    sharing policy let it leave."""

    specversion: str
    id: str
    source: str
    type: str
    time: str
    subject: str
    datacontenttype: str
    tenant: str
    site: str
    policyversion: int
    data: dict[str, Any]

    @classmethod
    def FromString(cls, data: bytes, /) -> FeedEvent:
        try:
            return _DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as err:
            raise Poison(f"not a FEED CloudEvent: {err}") from err


_DECODER = msgspec.json.Decoder(FeedEvent)

FEED_CHANNEL: Channel[FeedEvent] = Channel(FEED, "feed", ("tenant", "site", "kind"), FeedEvent)
