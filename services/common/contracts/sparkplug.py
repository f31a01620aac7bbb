"""The Sparkplug B payload (generated from proto/safetyhub/sparkplug by scripts/gen_proto.sh).

Import it from here, never from `_generated` directly, so a regeneration moves one place.
"""

from __future__ import annotations

from services.common.contracts._generated.safetyhub.sparkplug.sparkplug_b_pb2 import Payload

SparkplugPayload = Payload
SparkplugMetric = Payload.Metric

__all__ = ["SparkplugMetric", "SparkplugPayload"]
