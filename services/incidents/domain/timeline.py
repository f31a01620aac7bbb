"""Timeline entries: every change of an incident, by fusion or by a person (who, when, what, why)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.incidents.domain.fusion import Change
from services.incidents.domain.model import IncidentType, Status, Text

SYSTEM = "system"

# What a person's action is called on the timeline and in the CloudEvents type.
CHANGE_OF_ACTION = {
    "ack": "acknowledged",
    "assign": "assigned",
    "dispatch": "dispatched",
    "resolve": "resolved",
    "close": "closed",
    "reopen": "reopened",
    "comment": "commented",
    "attach": "attached",
}


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    incident_id: str
    at: datetime
    actor: str
    change: str  # opened, joined, raised, returned, resolved, merged, or CHANGE_OF_ACTION's
    what: str
    status: Status  # the incident's status after the change
    note: str = ""
    alarm_id: str | None = None
    cause: str = ""  # the alarm transition or request that caused it
    tenant: str = ""

    @classmethod
    def of_fusion(cls, change: Change, status: Status, tenant: str) -> Entry:
        return cls(
            tenant=tenant,
            id=change.id,
            incident_id=change.incident_id,
            at=change.at,
            actor=SYSTEM,
            change=str(change.kind),
            what=change.what,
            status=status,
            alarm_id=change.alarm_id,
            cause=change.cause,
        )


_TYPE_TITLES: dict[IncidentType, Text] = {
    IncidentType.GAS_RELEASE: Text(ko="가스 누출", en="Gas release"),
    IncidentType.FIRE: Text(ko="화재", en="Fire"),
    IncidentType.PERSON_DOWN: Text(ko="쓰러진 작업자", en="Person down"),
    IncidentType.INTRUSION: Text(ko="무단 침입", en="Intrusion"),
    IncidentType.PPE_VIOLATION: Text(ko="보호구 미착용", en="PPE violation"),
    IncidentType.EQUIPMENT_FAULT: Text(ko="설비 이상", en="Equipment fault"),
    IncidentType.COMM_LOSS: Text(ko="통신 두절", en="Communication loss"),
    IncidentType.ALARM_FLOOD: Text(ko="경보 폭주", en="Alarm flood"),
}


def title(kind: IncidentType, zones: list[str], site: str) -> Text:
    """`Gas release in fcc-2, cdu-1` / `가스 누출 - fcc-2, cdu-1`; the site when no zone is known."""
    where = ", ".join(zones) if zones else site
    name = _TYPE_TITLES[kind]
    return Text(ko=f"{name.ko} - {where}", en=f"{name.en} in {where}")
