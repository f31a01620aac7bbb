"""Incident changes as bus messages: the domain (domain/incident.py, domain/timeline.py) in the
protobuf contracts (proto/safetyhub/v1/incident.proto), ready for `UnitOfWork.emit`.

A change's message id is its timeline entry's id, derived from its cause: fusing a redelivered
alarm again, or relaying the outbox twice, sends the same id, and JetStream keeps the first.
"""

from __future__ import annotations

import enum
from typing import TypeVar

from services.alarms.adapters.wire import CLASS, PRIORITY, rfc3339, set_timestamp
from services.common.bus.publisher import OutgoingMessage
from services.common.contracts import (
    INCIDENT_TYPE,
    SCHEMA_VERSION,
    Envelope,
    IncidentChange,
    incident_change_type,
)
from services.common.contracts import CapCertainty as CapCertaintyPb
from services.common.contracts import CapSeverity as CapSeverityPb
from services.common.contracts import CapUrgency as CapUrgencyPb
from services.common.contracts import Incident as IncidentPb
from services.common.contracts import IncidentStatus as IncidentStatusPb
from services.common.contracts import IncidentType as IncidentTypePb
from services.common.contracts.cloudevents import ce_headers
from services.common.errors import SafetyhubError
from services.incidents.channel import INCIDENT_CHANNEL
from services.incidents.domain.incident import Incident
from services.incidents.domain.model import Certainty, IncidentType, Severity, Status, Urgency
from services.incidents.domain.timeline import Entry, title

SOURCE = "/incidents"
_NOT_IN_TOKEN = frozenset(".*> \t\r\n")

E = TypeVar("E", bound=enum.Enum)


class IncidentMessageError(SafetyhubError):
    """A value no incident message can carry: a bug in the producer, raised before emitting."""


def _by_name(domain: type[E], prefix: str, numbers: dict[str, int]) -> dict[E, int]:
    # Both enums' names, mapped once at import: a value added to one only fails here, not later.
    return {member: numbers[prefix + member.name] for member in domain}


TYPE = _by_name(IncidentType, "INCIDENT_TYPE_", dict(IncidentTypePb.items()))
STATUS = _by_name(Status, "INCIDENT_STATUS_", dict(IncidentStatusPb.items()))
SEVERITY = _by_name(Severity, "CAP_SEVERITY_", dict(CapSeverityPb.items()))
URGENCY = _by_name(Urgency, "CAP_URGENCY_", dict(CapUrgencyPb.items()))
CERTAINTY = _by_name(Certainty, "CAP_CERTAINTY_", dict(CapCertaintyPb.items()))


def incident_subject(incident: Incident) -> str:
    for token in (incident.tenant, incident.site, incident.id):
        if not token or any(ch in _NOT_IN_TOKEN for ch in token):
            raise IncidentMessageError(f"{token!r} cannot be a subject token")
    return INCIDENT_CHANNEL.subject(incident.tenant, incident.site, incident.id)


def change_message(entry: Entry, incident: Incident, *, correlation_id: str = "") -> OutgoingMessage:
    """The bus message of one change: CloudEvents headers, Nats-Msg-Id = the entry's id."""
    message = change_to_proto(entry, incident, correlation_id=correlation_id)
    type_ = incident_change_type(entry.change)
    headers = ce_headers(id=entry.id, type=type_, source=SOURCE, time=rfc3339(entry.at))
    return OutgoingMessage(incident_subject(incident), message.SerializeToString(), headers)


def change_to_proto(entry: Entry, incident: Incident, *, correlation_id: str = "") -> IncidentChange:
    message = IncidentChange()
    chain = correlation_id or incident.correlation_id or entry.id
    _envelope(message.envelope, entry, incident, chain=chain)
    message.envelope.causation_id = entry.cause
    message.incident_id = incident.id
    out = message.entry
    out.id = entry.id
    set_timestamp(out.time, entry.at)
    out.actor, out.change, out.what, out.note = entry.actor, entry.change, entry.what, entry.note
    out.alarm_id = entry.alarm_id or ""
    out.status = STATUS[entry.status]  # type: ignore[assignment]
    fill_incident(message.incident, incident, entry)
    message.incident.envelope.CopyFrom(message.envelope)
    message.incident.envelope.type = INCIDENT_TYPE
    return message


def fill_incident(out: IncidentPb, incident: Incident, entry: Entry) -> None:
    out.incident_id = incident.id
    out.type = TYPE[incident.type]  # type: ignore[assignment]
    out.status = STATUS[incident.status]  # type: ignore[assignment]
    out.severity = SEVERITY[incident.severity]  # type: ignore[assignment]
    out.urgency = URGENCY[incident.urgency]  # type: ignore[assignment]
    out.certainty = CERTAINTY[incident.certainty]  # type: ignore[assignment]
    out.confirmed = incident.confirmed
    set_timestamp(out.opened_at, incident.opened_at)
    set_timestamp(out.updated_at, entry.at)
    out.zones.extend(incident.zones)
    position = incident.position
    if position is not None:
        out.latitude, out.longitude = position
    for member in incident.members:
        m = out.members.add()
        m.alarm_id, m.device, m.rule = member.alarm_id, member.device, member.rule
        m.kind, m.zone = member.kind or "", member.zone or ""
        m.alarm_class = CLASS[member.alarm_class]
        m.priority = PRIORITY[member.priority]
        set_timestamp(m.joined_at, member.at)
        m.active, m.confirmed = member.active, member.confirmed
        m.snapshot = member.snapshot
        if member.returned_at is not None:
            set_timestamp(m.returned_at, member.returned_at)
    for action in incident.actions:
        text = out.actions.add()
        text.ko, text.en = action.ko, action.en
    name = title(incident.type, incident.zones, incident.site)
    out.title.ko, out.title.en = name.ko, name.en
    out.assignee = incident.assignee
    for key, count in incident.counts.items():
        out.counts[key] = count
    out.resolution_code, out.resolution_note = incident.resolution_code, incident.resolution_note
    out.version = incident.version


def _envelope(env: Envelope, entry: Entry, incident: Incident, *, chain: str) -> None:
    env.id, env.type, env.source = entry.id, incident_change_type(entry.change), SOURCE
    set_timestamp(env.time, entry.at)
    env.tenant, env.site = incident.tenant, incident.site
    env.correlation_id = chain
    env.schema_version = SCHEMA_VERSION
