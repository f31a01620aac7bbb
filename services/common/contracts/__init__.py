"""Bus message contracts: generated from proto/safetyhub/v1 by scripts/gen_proto.sh.

Import messages from here, never from `_generated` directly, so a regeneration moves one place.
"""

from __future__ import annotations

from services.common.contracts._generated.safetyhub.v1.alarm_pb2 import (
    Alarm,
    AlarmClass,
    AlarmCondition,
    AlarmFlood,
    AlarmPriority,
    AlarmRationale,
    AlarmState,
    AlarmTransition,
    LocalizedText,
    OperatorActionCause,
    TransitionCause,
)
from services.common.contracts._generated.safetyhub.v1.envelope_pb2 import Envelope
from services.common.contracts._generated.safetyhub.v1.incident_pb2 import (
    CapCertainty,
    CapSeverity,
    CapUrgency,
    Incident,
    IncidentChange,
    IncidentMember,
    IncidentStatus,
    IncidentType,
    TimelineEntry,
)
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
# The types on ALARMS: a change of one alarm's state, and a flood beginning or ending at a site.
ALARM_TRANSITION_TYPE = "org.safetyhub.alarm.transition.v1"
ALARM_FLOOD_TYPE = "org.safetyhub.alarm.flood.v1"
# The type in the envelope of the alarm an AlarmTransition carries.
ALARM_TYPE = "org.safetyhub.alarm.v1"
# The type in the envelope of the incident an IncidentChange carries; the change's own type is
# `incident_change_type(change)`, e.g. "org.safetyhub.incident.opened.v1".
INCIDENT_TYPE = "org.safetyhub.incident.v1"
SCHEMA_VERSION = 1


def incident_change_type(change: str) -> str:
    """The CloudEvents type of an IncidentChange of kind `change` (opened, acknowledged, ...)."""
    return f"org.safetyhub.incident.{change}.v1"

__all__ = [
    "ALARM_FLOOD_TYPE",
    "ALARM_TRANSITION_TYPE",
    "ALARM_TYPE",
    "INCIDENT_TYPE",
    "OBSERVATION_BATCH_TYPE",
    "OBSERVATION_TYPE",
    "SCHEMA_VERSION",
    "Alarm",
    "AlarmClass",
    "AlarmCondition",
    "AlarmFlood",
    "AlarmPriority",
    "AlarmRationale",
    "AlarmState",
    "AlarmTransition",
    "BoundingBox",
    "CapCertainty",
    "CapSeverity",
    "CapUrgency",
    "Envelope",
    "Incident",
    "IncidentChange",
    "IncidentMember",
    "IncidentStatus",
    "IncidentType",
    "LocalizedText",
    "Observation",
    "ObservationBatch",
    "OperatorActionCause",
    "Position",
    "Quality",
    "TimelineEntry",
    "TransitionCause",
    "incident_change_type",
]
