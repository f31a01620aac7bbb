"""The INCIDENTS stream and its channel: the incidents service publishes there; escalation, the
city feed and the live stream consume.

`incident.<tenant>.<site>.<incident id>`: an `IncidentChange`, each change of one incident with
its timeline entry and the incident after it. Tenant and site lead, so a consumer filters one
site or partitions on it, and the changes of one incident keep one subject, hence their order.
"""

from __future__ import annotations

from services.common.bus.channel import Channel
from services.common.bus.streams import StreamDef
from services.common.contracts import IncidentChange
from services.common.settings import StreamConfig

# Incidents are reviewed weeks later, but PostgreSQL is their record: the stream is for consumers
# to catch up after an outage, so a month is plenty.
INCIDENTS_DEFAULT_LIMITS = StreamConfig(max_age_hours=24.0 * 30)

INCIDENTS = StreamDef(
    "INCIDENTS",
    ("incident.>",),
    "Incident changes: opened, alarms joined, acknowledged, dispatched, resolved, closed, reopened",
    config_key="incidents",
    default_limits=INCIDENTS_DEFAULT_LIMITS,
)

INCIDENT_CHANNEL: Channel[IncidentChange] = Channel(
    INCIDENTS, "incident", ("tenant", "site", "incident"), IncidentChange
)
