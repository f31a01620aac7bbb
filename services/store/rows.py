"""Observation message -> table row. A message that is not a valid observation is poison."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg

from services.common.bus.consumer import Poison
from services.common.contracts import Observation

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


def _moment(seconds: int, nanos: int) -> datetime:
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
    return msgspec.json.encode(detail).decode() if detail else None


def observation_row(msg: Msg) -> Row:
    try:
        obs = Observation.FromString(msg.data)
    except DecodeError as err:
        raise Poison(f"not an Observation protobuf: {err}") from err
    env = obs.envelope
    if not env.id or not env.tenant or not env.site or not obs.device or not obs.kind:
        raise Poison("observation lacks id, tenant, site, device or kind")
    if (
        "\x00" in obs.unit
        or "\x00" in obs.snapshot
        or any("\x00" in k + v for k, v in obs.attributes.items())
    ):
        raise Poison("a text field holds U+0000, which PostgreSQL cannot store")
    expected = f"obs.{env.tenant}.{env.site}.{obs.device}"
    if msg.subject != expected:
        raise Poison(f"subject {msg.subject} does not match the envelope ({expected})")
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
