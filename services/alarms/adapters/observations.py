"""An OBSERVATIONS message as the alarm engine's observations. A message that is not a valid
batch of one device's observations is poison (dead-lettered with the reason)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

from nats.aio.msg import Msg

from services.alarms.domain.workset import Observation
from services.common.bus.channel import ChannelSubscriber
from services.common.bus.consumer import Poison
from services.ingest.channel import OBSERVATION_CHANNEL

OBSERVATIONS_IN = ChannelSubscriber(OBSERVATION_CHANNEL)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=4096)
def _moment(seconds: int, nanos: int) -> datetime:
    # Cached: a gateway's poll cycle stamps many readings alike.
    return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)


def observations_of(msg: Msg) -> list[Observation]:
    """The observations of one OBSERVATIONS message (an ObservationBatch of one device)."""
    batch = OBSERVATIONS_IN.decode(msg)
    if not batch.observations:
        raise Poison("the batch holds no observation")
    tenant, site = batch.envelope.tenant, batch.envelope.site
    device = batch.observations[0].device
    OBSERVATIONS_IN.check_subject(msg, tenant, site, device)
    out: list[Observation] = []
    append = out.append
    for index, obs in enumerate(batch.observations):
        env = obs.envelope
        obs_id, kind = env.id, obs.kind
        if not obs_id or not kind:
            raise Poison(f"observation {index} lacks an id or a kind")
        if env.tenant != tenant or env.site != site or obs.device != device:
            raise Poison(f"observation {index} is not of {tenant}/{site}/{device} like its batch")
        when = env.time
        # An unset value reads as 0.0: only a zero needs HasField to tell a reading of zero from
        # none, and most readings are not exactly zero (each call into upb costs).
        value: float | None = obs.value
        if not value and not obs.HasField("value"):
            value = None
        confidence: float | None = obs.confidence
        if not confidence and not obs.HasField("confidence"):
            confidence = None
        append(
            Observation(
                tenant,
                site,
                device,
                kind,
                obs_id,
                _moment(when.seconds, when.nanos),
                value,
                confidence,
                obs.quality,
                obs.snapshot,
            )
        )
    return out
