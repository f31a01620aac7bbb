"""Bus message contracts: generated from proto/safetyhub/v1 by scripts/gen_proto.sh.

Import messages from here, never from `_generated` directly, so a regeneration moves one place.
"""

from __future__ import annotations

from services.common.contracts._generated.safetyhub.v1.envelope_pb2 import Envelope
from services.common.contracts._generated.safetyhub.v1.observation_pb2 import (
    BoundingBox,
    Observation,
    ObservationBatch,
    Position,
    Quality,
)

# The CloudEvents type of the messages on OBSERVATIONS: each is an ObservationBatch.
OBSERVATION_BATCH_TYPE = "org.safetyhub.observation.batch.v1"
# The type in each observation's own envelope.
OBSERVATION_TYPE = "org.safetyhub.observation.v1"
SCHEMA_VERSION = 1

__all__ = [
    "OBSERVATION_BATCH_TYPE",
    "OBSERVATION_TYPE",
    "SCHEMA_VERSION",
    "BoundingBox",
    "Envelope",
    "Observation",
    "ObservationBatch",
    "Position",
    "Quality",
]
