"""The events of the live stream (`GET /v1/stream`): what an incident or alarm change on the bus
becomes on the wire of Server-Sent Events, and the event ids a client resumes from.

An event's id is the position of the client in both streams after that event: the INCIDENTS
and ALARMS stream sequences of the last change it was sent from each (`<incidents>-<alarms>`,
opaque to clients). Each stream's changes go out in sequence order, so every change of a stream
at or below its part of the id was sent, or was not the client's to see; a client that comes
back with that id in `Last-Event-ID` gets everything after it from the streams themselves.
Pure: no I/O, unit-tested without servers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import msgspec

from services.alarms.adapters.wire import CLASS_BACK, CONDITION_BACK, PRIORITY_BACK, STATE_BACK
from services.common.contracts import AlarmTransition, IncidentChange
from services.incidents.adapters.messages import CERTAINTY, SEVERITY, STATUS, TYPE, URGENCY
from services.incidents.read_json import KO, rfc3339

# Proto enum numbers back to the API's strings (the same strings the incidents API answers).
_TYPE = {number: str(value) for value, number in TYPE.items()}
_STATUS = {number: str(value) for value, number in STATUS.items()}
_SEVERITY = {number: str(value) for value, number in SEVERITY.items()}
_URGENCY = {number: str(value) for value, number in URGENCY.items()}
_CERTAINTY = {number: str(value) for value, number in CERTAINTY.items()}

# The `type` a client filters alarm changes by (the other types are the incident types).
ALARM_TYPE = "alarm"
_EVENT_ID = re.compile(r"^(?P<incidents>[0-9]{1,19})-(?P<alarms>[0-9]{1,19})\Z", re.ASCII)


class BadEventId(ValueError):
    """A `Last-Event-ID` that is not one this stream sent."""


@dataclass(frozen=True, slots=True)
class Position:
    """How far a client has been sent: the last INCIDENTS and ALARMS sequence of each stream."""

    incidents: int
    alarms: int

    def event_id(self) -> str:
        return f"{self.incidents}-{self.alarms}"

    @classmethod
    def parse(cls, raw: str) -> Position:
        match = _EVENT_ID.match(raw.strip())
        if match is None:
            raise BadEventId("expected the id of an event this stream sent, such as 1042-877")
        return cls(int(match["incidents"]), int(match["alarms"]))

    def after(self, stream: str, seq: int) -> Position:
        if stream == INCIDENTS:
            return Position(max(self.incidents, seq), self.alarms)
        return Position(self.incidents, max(self.alarms, seq))

    def of(self, stream: str) -> int:
        return self.incidents if stream == INCIDENTS else self.alarms


INCIDENTS, ALARMS = "INCIDENTS", "ALARMS"


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One change as the stream sends it: who may see it, what it is called, its JSON per language.

    Built once per change and shared by every client (`data` holds the encoded JSON per language,
    so a thousand clients cost one encoding each).
    """

    stream: str  # INCIDENTS or ALARMS
    seq: int  # its stream sequence
    tenant: str
    site: str
    type: str  # the incident's type, or "alarm"
    name: str  # the SSE event name: incident.opened, alarm.transition
    data: dict[str, bytes]  # language -> JSON

    def frame(self, position: Position, language: str) -> bytes:
        """The SSE frame, with the id of `position` (the client's after this event)."""
        body = self.data.get(language) or next(iter(self.data.values()))
        return b"id: %s\nevent: %s\ndata: %s\n\n" % (position.event_id().encode(), self.name.encode(), body)


def heartbeat() -> bytes:
    # A comment line: EventSource ignores it, proxies and the client see the connection alive.
    return b": heartbeat\n\n"


def notice(name: str, body: dict[str, Any], position: Position | None = None) -> bytes:
    """An event of the stream itself (`stream.behind`): no change of an incident or alarm."""
    line = b"id: %s\n" % position.event_id().encode() if position is not None else b""
    return line + b"event: %s\ndata: %s\n\n" % (name.encode(), msgspec.json.encode(body))


def change_name(change: str) -> str:
    return f"incident.{change}"


def incident_event(change: IncidentChange, seq: int, languages: tuple[str, ...]) -> LiveEvent:
    env, incident = change.envelope, change.incident
    data = {lang: msgspec.json.encode(incident_change_json(change, lang)) for lang in languages}
    return LiveEvent(
        INCIDENTS,
        seq,
        env.tenant,
        env.site,
        _TYPE.get(incident.type, "unknown"),
        change_name(change.entry.change or "changed"),
        data,
    )


def incident_change_json(change: IncidentChange, lang: str) -> dict[str, Any]:
    """The incident after the change, as `GET /v1/incidents` lists it, and the timeline entry."""
    incident, entry = change.incident, change.entry
    position = (
        {"lat": incident.latitude, "lon": incident.longitude}
        if incident.HasField("latitude") and incident.HasField("longitude")
        else None
    )
    resolution = (
        {"code": incident.resolution_code, "note": incident.resolution_note}
        if incident.resolution_code
        else None
    )
    body = {
        "id": incident.incident_id,
        "site": change.envelope.site,
        "type": _TYPE.get(incident.type, "unknown"),
        "status": _STATUS.get(incident.status, "unknown"),
        "severity": _SEVERITY.get(incident.severity, "Unknown"),
        "urgency": _URGENCY.get(incident.urgency, "Unknown"),
        "certainty": _CERTAINTY.get(incident.certainty, "Unknown"),
        "confirmed": incident.confirmed,
        "title": incident.title.ko if lang == KO else incident.title.en,
        "language": lang,
        "openedAt": rfc3339(incident.opened_at.ToDatetime(tzinfo=UTC)),
        "updatedAt": rfc3339(incident.updated_at.ToDatetime(tzinfo=UTC)),
        "zones": list(incident.zones),
        "position": position,
        "assignee": incident.assignee or None,
        "alarms": len(incident.members),
        "activeAlarms": sum(m.active for m in incident.members),
        "counts": dict(incident.counts),
        "resolution": resolution,
        "version": incident.version,
    }
    return {
        "incident": body,
        "entry": {
            "id": entry.id,
            "at": rfc3339(entry.time.ToDatetime(tzinfo=UTC)),
            "actor": entry.actor,
            "change": entry.change,
            "what": entry.what,
            "note": entry.note or None,
            "alarmId": entry.alarm_id or None,
            "status": _STATUS.get(entry.status, "unknown"),
        },
    }


def alarm_event(transition: AlarmTransition, seq: int) -> LiveEvent:
    env = transition.envelope
    body = msgspec.json.encode(alarm_transition_json(transition))
    return LiveEvent(ALARMS, seq, env.tenant, env.site, ALARM_TYPE, "alarm.transition", {"": body})


def _name(table: dict[int, Any], number: int) -> str:
    value = table.get(number)
    return str(value) if value is not None else "unknown"


def alarm_transition_json(transition: AlarmTransition) -> dict[str, Any]:
    """The alarm after the transition in the alarm API's words (`GET /v1/alarms`), with the
    state it left and the transition's id."""
    alarm = transition.alarm
    flags = sorted(
        name for name, on in (("chattering", alarm.chattering), ("fleeting", alarm.fleeting)) if on
    )
    shelved = alarm.shelved_until.ToDatetime(tzinfo=UTC) if alarm.HasField("shelved_until") else None
    return {
        "id": transition.alarm_id,
        "transition_id": transition.envelope.id,
        "site": transition.envelope.site,
        "device": alarm.device,
        "rule": alarm.rule,
        "condition": _name(CONDITION_BACK, alarm.condition),
        "priority": _name(PRIORITY_BACK, alarm.priority),
        "class": _name(CLASS_BACK, alarm.alarm_class),
        "old_state": _name(STATE_BACK, transition.old_state),
        "state": _name(STATE_BACK, transition.new_state),
        "active": alarm.active,
        "latched": alarm.latched,
        "shelved_until": rfc3339(shelved),
        "flags": flags,
        "changed_at": rfc3339(transition.envelope.time.ToDatetime(tzinfo=UTC)),
    }
