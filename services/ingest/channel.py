"""The OBSERVATIONS stream and its channel: ingest publishes there, the store and others consume.

One message per device and post, an `ObservationBatch`, on `obs.<tenant>.<site>.<device>`.
"""

from __future__ import annotations

from services.common.bus.channel import Channel
from services.common.bus.streams import StreamDef
from services.common.contracts import ObservationBatch

OBSERVATIONS = StreamDef(
    "OBSERVATIONS",
    ("obs.>",),
    "Readings and detections: one message per device and post",
    config_key="observations",
)

OBSERVATION_CHANNEL: Channel[ObservationBatch] = Channel(
    OBSERVATIONS, "obs", ("tenant", "site", "device"), ObservationBatch
)
