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
OBSERVATIONS_IN = ChannelSubscriber(OBSERVATION_CHANNEL)


@lru_cache(maxsize=4096)
def _moment(seconds: int, nanos: int) -> datetime:
    # Cached: every observation of a post shares its receive time, and a gateway's poll cycle
    # stamps many readings alike.
    return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)


def _detail(obs: Observation) -> str | None:
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
    if obs.attributes:
        detail["attributes"] = dict(obs.attributes)
    if obs.quality_reason:
        # Named as GET /v1/observations returns it, which spreads `detail` into the item.
        detail["qualityReason"] = obs.quality_reason
    return msgspec.json.encode(detail).decode() if detail else None


def _row(obs: Observation) -> Row:
    env = obs.envelope
    return (
        env.id,
        _moment(env.time.seconds, env.time.nanos),
        env.tenant,
        env.site,
        obs.device,
        obs.kind,
        obs.value if obs.HasField("value") else None,
        obs.unit,
        int(obs.quality),
        obs.confidence if obs.HasField("confidence") else None,
        obs.snapshot or None,
        _detail(obs),
        _moment(obs.received.seconds, obs.received.nanos),
    )


def _has_nul(obs: Observation) -> bool:
    return (
        "\x00" in obs.unit
        or "\x00" in obs.snapshot
        or (bool(obs.attributes) and any("\x00" in k + v for k, v in obs.attributes.items()))
    )


def observation_rows(msg: Msg) -> list[Row]:
    """The rows of one OBSERVATIONS message (an ObservationBatch of one device)."""
    batch = OBSERVATIONS_IN.decode(msg)
    if not batch.observations:
        raise Poison("the batch holds no observation")
    tenant, site = batch.envelope.tenant, batch.envelope.site
    device = batch.observations[0].device
    OBSERVATIONS_IN.check_subject(msg, tenant, site, device)
    rows = []
    for index, obs in enumerate(batch.observations):
        env = obs.envelope
        if not env.id or not obs.kind:
            raise Poison(f"observation {index} lacks an id or a kind")
        if env.tenant != tenant or env.site != site or obs.device != device:
            raise Poison(f"observation {index} is not of {tenant}/{site}/{device} like its batch")
        if _has_nul(obs):
            raise Poison(f"observation {index}: a text field holds U+0000, which PostgreSQL cannot store")
        rows.append(_row(obs))
    return rows
