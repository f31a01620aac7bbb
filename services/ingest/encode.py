"""Build the bus message of one accepted observation: proto payload, CloudEvents headers, subject."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

from services.common.bus.publisher import OutgoingMessage
from services.common.bus.streams import observation_subject
from services.common.contracts import OBSERVATION_TYPE, SCHEMA_VERSION, Observation, Quality
from services.common.contracts.cloudevents import ce_headers
from services.common.contracts.ids import derived_id
from services.ingest.domain.contract import ObservationIn

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_QUALITY = {
    "good": Quality.QUALITY_GOOD,
    "uncertain": Quality.QUALITY_UNCERTAIN,
    "bad": Quality.QUALITY_BAD,
    "QUALITY_GOOD": Quality.QUALITY_GOOD,
    "QUALITY_UNCERTAIN": Quality.QUALITY_UNCERTAIN,
    "QUALITY_BAD": Quality.QUALITY_BAD,
}


def _split(moment: datetime) -> tuple[int, int]:
    delta = moment - _EPOCH
    return delta.days * 86_400 + delta.seconds, delta.microseconds * 1000


@lru_cache(maxsize=256)
def rfc3339(moment: datetime) -> str:
    # Cached: the readings of one gateway post usually share a handful of timestamps.
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def to_message(item: ObservationIn, *, tenant: str, source: str, received: datetime) -> OutgoingMessage:
    moment = item.time or received
    seconds, nanos = _split(moment)
    message_id = item.id or derived_id(
        seconds * 1000 + nanos // 1_000_000,
        tenant,
        item.site,
        item.device,
        item.kind,
        f"{seconds}.{nanos:09d}",
        repr(item.value),
        repr(item.confidence),
    )
    obs = Observation(
        device=item.device,
        kind=item.kind,
        unit=item.unit or "",
        quality=_QUALITY[item.quality],
        snapshot=item.snapshot or "",
    )
    if item.attributes:  # an empty map assignment still costs a call into upb
        obs.attributes.update(item.attributes)
    env = obs.envelope
    env.id = message_id
    env.type = OBSERVATION_TYPE
    env.source = source
    env.time.seconds = seconds
    env.time.nanos = nanos
    env.tenant = tenant
    env.site = item.site
    env.correlation_id = item.correlation_id or message_id
    env.schema_version = SCHEMA_VERSION
    if item.value is not None:
        obs.value = item.value
    if item.confidence is not None:
        obs.confidence = item.confidence
    if item.box is not None:
        obs.box.x, obs.box.y, obs.box.width, obs.box.height = (
            item.box.x,
            item.box.y,
            item.box.width,
            item.box.height,
        )
    if item.position is not None:
        obs.position.latitude = item.position.latitude
        obs.position.longitude = item.position.longitude
        if item.position.altitude is not None:
            obs.position.altitude = item.position.altitude
    obs.received.seconds, obs.received.nanos = _split(received)
    headers = ce_headers(id=message_id, type=OBSERVATION_TYPE, source=source, time=rfc3339(moment))
    return OutgoingMessage(
        observation_subject(tenant, item.site, item.device), obs.SerializeToString(), headers
    )
