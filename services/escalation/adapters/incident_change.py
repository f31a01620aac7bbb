"""INCIDENTS messages read for escalation: the change, and the incident after it as the incidents
API shows it (`services/incidents/read_json.py`'s `incident_json`), in an endpoint's language.

The change carries the whole incident, so escalation keeps no copy of another service's table and
each notification shows the incident as that change left it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nats.aio.msg import Msg

from services.alarms.adapters.wire import from_timestamp
from services.common.bus.channel import ChannelSubscriber
from services.common.bus.consumer import Poison
from services.common.contracts import IncidentChange
from services.incidents.adapters.messages import CERTAINTY, SEVERITY, STATUS, TYPE, URGENCY
from services.incidents.channel import INCIDENT_CHANNEL
from services.incidents.read_json import KO, rfc3339

CHANGES_IN = ChannelSubscriber(INCIDENT_CHANNEL)
_TYPE = {number: str(member) for member, number in TYPE.items()}
_STATUS = {number: str(member) for member, number in STATUS.items()}
_SEVERITY = {number: str(member) for member, number in SEVERITY.items()}
_URGENCY = {number: str(member) for member, number in URGENCY.items()}
_CERTAINTY = {number: str(member) for member, number in CERTAINTY.items()}


@dataclass(frozen=True, slots=True)
class ChangeMessage:
    """One change of one incident, as escalation needs it."""

    id: str  # the timeline entry's id: the change's identity
    tenant: str
    site: str
    incident_id: str
    change: str  # opened, acknowledged, resolved, ...
    at: datetime
    type: str
    severity: str
    correlation_id: str
    message: IncidentChange
    # The incident's JSON per language, made once for the endpoints that each get it.
    _json: dict[str, dict[str, Any]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def incident_json(self, lang: str) -> dict[str, Any]:
        made = self._json.get(lang)
        if made is None:
            made = self._json[lang] = incident_json(self.message, lang)
        return dict(made)  # a copy of its own: a caller may add to it


def _back(table: dict[int, str], number: int, field: str) -> str:
    try:
        return table[number]
    except KeyError:
        raise Poison(f"incident.{field} {number} is not a known value") from None


def read_change(msg: Msg) -> ChangeMessage:
    """Decoder for the consumer of `incident.>` (undecodable or on a wrong subject: Poison)."""
    message = CHANGES_IN.decode(msg)
    env = message.envelope
    CHANGES_IN.check_subject(msg, env.tenant, env.site, message.incident_id)
    if not message.entry.id or not message.entry.change:
        raise Poison("an IncidentChange without its timeline entry")
    if message.incident.incident_id != message.incident_id:
        raise Poison("the change's incident_id is not its incident's")
    return change_of(message)


def change_of(
    message: IncidentChange, *, change: str | None = None, at: datetime | None = None
) -> ChangeMessage:
    """The change a message carries; with `change` and `at`, a notification of the incident as
    the message left it (an escalation step's)."""
    env, incident = message.envelope, message.incident
    return ChangeMessage(
        id=message.entry.id,
        tenant=env.tenant,
        site=env.site,
        incident_id=message.incident_id,
        change=change or message.entry.change,
        at=at or from_timestamp(message.entry.time),
        type=_back(_TYPE, incident.type, "type"),
        severity=_back(_SEVERITY, incident.severity, "severity"),
        correlation_id=env.correlation_id,
        message=message,
    )


def incident_json(message: IncidentChange, lang: str) -> dict[str, Any]:
    """The incident after the change, in the incidents API's shape and the language asked."""
    incident = message.incident
    has_position = incident.HasField("latitude") and incident.HasField("longitude")
    resolution = (
        {"code": incident.resolution_code, "note": incident.resolution_note}
        if incident.resolution_code
        else None
    )
    return {
        "id": incident.incident_id,
        "site": message.envelope.site,
        "type": _back(_TYPE, incident.type, "type"),
        "status": _back(_STATUS, incident.status, "status"),
        "severity": _back(_SEVERITY, incident.severity, "severity"),
        "urgency": _back(_URGENCY, incident.urgency, "urgency"),
        "certainty": _back(_CERTAINTY, incident.certainty, "certainty"),
        "confirmed": incident.confirmed,
        "title": incident.title.ko if lang == KO else incident.title.en,
        "language": lang,
        "openedAt": rfc3339(from_timestamp(incident.opened_at)),
        "updatedAt": rfc3339(from_timestamp(incident.updated_at)),
        "zones": list(incident.zones),
        "position": {"lat": incident.latitude, "lon": incident.longitude} if has_position else None,
        "assignee": incident.assignee or None,
        "alarms": len(incident.members),
        "activeAlarms": sum(m.active for m in incident.members),
        "counts": dict(incident.counts),
        "resolution": resolution,
        "version": incident.version,
    }
