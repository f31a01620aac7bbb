"""Observation message -> table rows. A message that is not a valid batch of observations is poison."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

import msgspec
from nats.aio.msg import Msg

from services.common.bus.channel import ChannelSubscriber
from services.common.bus.consumer import Poison
from services.common.contracts import Observation
from services.ingest.channel import OBSERVATION_CHANNEL

COLUMNS = (
    "id",
    "time",
    "tenant",
    "site",
    "device",
    "kind",
    "value",
    "unit",
    "quality",
    "confidence",
    "snapshot",
    "detail",
    "received",
)
Row = tuple[object, ...]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NUL = "a text field holds U+0000, which PostgreSQL cannot store"
OBSERVATIONS_IN = ChannelSubscriber(OBSERVATION_CHANNEL)


@lru_cache(maxsize=4096)
def _moment(seconds: int, nanos: int) -> datetime:
    # Cached: every observation of a post shares its receive time, and a gateway's poll cycle
    # stamps many readings alike.
    return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)


def _detail(obs: Observation, quality_reason: str) -> str | None:
    """The rarely set fields, as one JSON text; None when there are none (most readings)."""
    detail: dict[str, object] = {}
    if obs.HasField("box"):
        b = obs.box
        detail["box"] = {"x": b.x, "y": b.y, "width": b.width, "height": b.height}
    if obs.HasField("position"):
        p = obs.position
        position: dict[str, float] = {"latitude": p.latitude, "longitude": p.longitude}
        if p.HasField("altitude"):
            position["altitude"] = p.altitude
        detail["position"] = position
    attributes = obs.attributes
    if attributes:
        if any("\x00" in k or "\x00" in v for k, v in attributes.items()):
            raise _Nul
        detail["attributes"] = dict(attributes)
    if quality_reason:
        # Named as GET /v1/observations returns it, which spreads `detail` into the item.
        detail["qualityReason"] = quality_reason
    return msgspec.json.encode(detail).decode() if detail else None


class _Nul(Exception):
    """A text field holds U+0000 (raised inside `_detail`, reported with the observation's index)."""


def observation_rows(msg: Msg) -> list[Row]:
    """The rows of one OBSERVATIONS message (an ObservationBatch of one device).

    Run for every observation the hub takes in, so each field is read once (every read of a
    protobuf field is a call into upb that builds a new Python object), `HasField` is asked only
    of a value or confidence that reads as zero, the columns every row of the batch shares are
    the batch's own objects, and a time equal to the previous row's is that row's datetime.
    """
    batch = OBSERVATIONS_IN.decode(msg)
    observations = batch.observations
    if not observations:
        raise Poison("the batch holds no observation")
    tenant, site = batch.envelope.tenant, batch.envelope.site
    device = observations[0].device
    OBSERVATIONS_IN.check_subject(msg, tenant, site, device)
    rows: list[Row] = []
    append = rows.append
    moment = _moment
    # The last times seen, as (seconds, nanos) and datetime: the readings of a post mostly share
    # their time and always their receive time.
    last_when: tuple[int, int] | None = None
    last_time = _EPOCH
    last_got: tuple[int, int] | None = None
    last_received = _EPOCH
    for index, obs in enumerate(observations):
        env = obs.envelope
        obs_id, kind = env.id, obs.kind
        if not obs_id or not kind:
            raise Poison(f"observation {index} lacks an id or a kind")
        if env.tenant != tenant or env.site != site or obs.device != device:
            raise Poison(f"observation {index} is not of {tenant}/{site}/{device} like its batch")
        unit, snapshot, quality_reason = obs.unit, obs.snapshot, obs.quality_reason
        if "\x00" in unit or "\x00" in snapshot:
            raise Poison(f"observation {index}: {_NUL}")
        # An unset value reads as 0.0: only a zero needs HasField to tell a reading of zero from none.
        value: float | None = obs.value
        if not value and not obs.HasField("value"):
            value = None
        confidence: float | None = obs.confidence
        if not confidence and not obs.HasField("confidence"):
            confidence = None
        stamp = env.time
        when = (stamp.seconds, stamp.nanos)
        if when != last_when:
            last_when, last_time = when, moment(*when)
        stamp = obs.received
        got = (stamp.seconds, stamp.nanos)
        if got != last_got:
            last_got, last_received = got, moment(*got)
        detail = None
        # Set on detections and refused ranges only: most readings skip the call.
        if quality_reason or obs.HasField("box") or obs.HasField("position") or obs.attributes:
            try:
                detail = _detail(obs, quality_reason)
            except _Nul:
                raise Poison(f"observation {index}: {_NUL}") from None
        append(
            (
                obs_id,
                last_time,
                tenant,
                site,
                device,
                kind,
                value,
                unit,
                obs.quality,
                confidence,
                snapshot or None,
                detail,
                last_received,
            )
        )
    return rows
