"""What a CAP alert says about an incident: its CAP codes and its words in Korean or English.

The tables map the incident contract's enums (proto/safetyhub/v1/incident.proto) to CAP 1.2's
closed vocabularies. A value the table does not know (an enum number added to the contract after
this release) maps to CAP's own "Unknown" or "Other", never to an error: an alert that says less
is still delivered, one that fails to render is not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from services.common.contracts import (
    CapCertainty,
    CapSeverity,
    CapUrgency,
    Incident,
    IncidentChange,
    IncidentStatus,
    IncidentType,
    LocalizedText,
)
from services.common.sites.model import Site

Language = Literal["ko", "en"]
# RFC 5646 tags of CAP's <language>.
LANGUAGE_TAG: dict[Language, str] = {"ko": "ko-KR", "en": "en-US"}

_T = IncidentType
# More than one category where the incident is of more than one kind: a gas release is an
# environmental hazard and a process-safety one; a person down needs rescue and medical care.
CATEGORIES: dict[int, tuple[str, ...]] = {
    _T.INCIDENT_TYPE_GAS_RELEASE: ("Env", "Safety"),
    _T.INCIDENT_TYPE_FIRE: ("Fire",),
    _T.INCIDENT_TYPE_PERSON_DOWN: ("Rescue", "Health"),
    _T.INCIDENT_TYPE_INTRUSION: ("Security",),
    _T.INCIDENT_TYPE_PPE_VIOLATION: ("Safety",),
    _T.INCIDENT_TYPE_EQUIPMENT_FAULT: ("Infra",),
    _T.INCIDENT_TYPE_COMM_LOSS: ("Infra",),
    _T.INCIDENT_TYPE_ALARM_FLOOD: ("Safety",),
}

# The stable machine name of each type, carried as an <eventCode> beside the human <event>.
TYPE_CODES: dict[int, str] = {
    _T.INCIDENT_TYPE_GAS_RELEASE: "gas_release",
    _T.INCIDENT_TYPE_FIRE: "fire",
    _T.INCIDENT_TYPE_PERSON_DOWN: "person_down",
    _T.INCIDENT_TYPE_INTRUSION: "intrusion",
    _T.INCIDENT_TYPE_PPE_VIOLATION: "ppe_violation",
    _T.INCIDENT_TYPE_EQUIPMENT_FAULT: "equipment_fault",
    _T.INCIDENT_TYPE_COMM_LOSS: "comm_loss",
    _T.INCIDENT_TYPE_ALARM_FLOOD: "alarm_flood",
}

EVENTS: dict[int, dict[Language, str]] = {
    _T.INCIDENT_TYPE_GAS_RELEASE: {"ko": "가스 누출", "en": "Gas release"},
    _T.INCIDENT_TYPE_FIRE: {"ko": "화재", "en": "Fire"},
    _T.INCIDENT_TYPE_PERSON_DOWN: {"ko": "쓰러진 작업자", "en": "Person down"},
    _T.INCIDENT_TYPE_INTRUSION: {"ko": "무단 침입", "en": "Intrusion"},
    _T.INCIDENT_TYPE_PPE_VIOLATION: {"ko": "보호구 미착용", "en": "PPE violation"},
    _T.INCIDENT_TYPE_EQUIPMENT_FAULT: {"ko": "설비 이상", "en": "Equipment fault"},
    _T.INCIDENT_TYPE_COMM_LOSS: {"ko": "통신 두절", "en": "Communication loss"},
    _T.INCIDENT_TYPE_ALARM_FLOOD: {"ko": "경보 폭주", "en": "Alarm flood"},
}
_UNKNOWN_EVENT: dict[Language, str] = {"ko": "안전 사고", "en": "Safety incident"}

SEVERITY: dict[int, str] = {
    CapSeverity.CAP_SEVERITY_MINOR: "Minor",
    CapSeverity.CAP_SEVERITY_MODERATE: "Moderate",
    CapSeverity.CAP_SEVERITY_SEVERE: "Severe",
    CapSeverity.CAP_SEVERITY_EXTREME: "Extreme",
}
URGENCY: dict[int, str] = {
    CapUrgency.CAP_URGENCY_PAST: "Past",
    CapUrgency.CAP_URGENCY_FUTURE: "Future",
    CapUrgency.CAP_URGENCY_EXPECTED: "Expected",
    CapUrgency.CAP_URGENCY_IMMEDIATE: "Immediate",
}
CERTAINTY: dict[int, str] = {
    CapCertainty.CAP_CERTAINTY_UNLIKELY: "Unlikely",
    CapCertainty.CAP_CERTAINTY_POSSIBLE: "Possible",
    CapCertainty.CAP_CERTAINTY_LIKELY: "Likely",
    CapCertainty.CAP_CERTAINTY_OBSERVED: "Observed",
}

ENDED = frozenset({IncidentStatus.INCIDENT_STATUS_RESOLVED, IncidentStatus.INCIDENT_STATUS_CLOSED})

STATUS_CODES: dict[int, str] = {
    IncidentStatus.INCIDENT_STATUS_OPEN: "open",
    IncidentStatus.INCIDENT_STATUS_ACKNOWLEDGED: "acknowledged",
    IncidentStatus.INCIDENT_STATUS_DISPATCHED: "dispatched",
    IncidentStatus.INCIDENT_STATUS_RESOLVED: "resolved",
    IncidentStatus.INCIDENT_STATUS_CLOSED: "closed",
}
_STATUS_WORDS: dict[int, dict[Language, str]] = {
    IncidentStatus.INCIDENT_STATUS_OPEN: {"ko": "발생", "en": "open"},
    IncidentStatus.INCIDENT_STATUS_ACKNOWLEDGED: {"ko": "확인됨", "en": "acknowledged"},
    IncidentStatus.INCIDENT_STATUS_DISPATCHED: {"ko": "출동", "en": "responders dispatched"},
    IncidentStatus.INCIDENT_STATUS_RESOLVED: {"ko": "해결됨", "en": "resolved"},
    IncidentStatus.INCIDENT_STATUS_CLOSED: {"ko": "종결", "en": "closed"},
}

_LABELS: dict[str, dict[Language, str]] = {
    "status": {"ko": "상태", "en": "Status"},
    "confirmed": {"ko": "복수 감지기로 확인됨", "en": "confirmed by more than one detector"},
    "site": {"ko": "사업장", "en": "Site"},
    "zones": {"ko": "구역", "en": "Zones"},
    "alarms": {"ko": "경보", "en": "Alarms"},
    "active": {"ko": "작동 중", "en": "active"},
    "cleared": {"ko": "복귀", "en": "returned to normal"},
    "counts": {"ko": "경보 횟수", "en": "Activations"},
    "assignee": {"ko": "담당", "en": "Assigned to"},
    "change": {"ko": "최근 변경", "en": "Latest change"},
    "note": {"ko": "메모", "en": "Note"},
    "resolution": {"ko": "해결 사유", "en": "Resolution"},
    "resolved": {"ko": "해제", "en": "Resolved"},
}

# Characters XML 1.0 cannot carry at all, even escaped (C0 controls but tab and newlines,
# surrogates, U+FFFE/FFFF): replaced, since an alert must render whatever the text holds.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """`text` as XML 1.0 can carry it: forbidden characters become U+FFFD, line ends `\\n`.

    (A parser turns a raw CR into LF anyway; doing it here keeps what is sent equal to what is read.)
    """
    return _NOT_XML.sub("\ufffd", text.replace("\r\n", "\n").replace("\r", "\n"))


def localized(text: LocalizedText, language: Language) -> str:
    """The text in `language`, else in the other one: a rule written in one language still speaks."""
    first, second = (text.ko, text.en) if language == "ko" else (text.en, text.ko)
    return first.strip() or second.strip()


def event(incident: Incident, language: Language) -> str:
    return EVENTS.get(incident.type, _UNKNOWN_EVENT)[language]


def categories(incident: Incident) -> tuple[str, ...]:
    return CATEGORIES.get(incident.type, ("Other",))


def response_types(incident: Incident) -> tuple[str, ...]:
    """What people in the area should do (CAP <responseType>), from the type and the severity.

    A fire is evacuated; a gas release of severe or extreme severity too, a lesser one is
    watched; a person down calls for the site's rescue plan. An ended incident is all clear.
    """
    if incident.status in ENDED:
        return ("AllClear",)
    grave = incident.severity in (CapSeverity.CAP_SEVERITY_SEVERE, CapSeverity.CAP_SEVERITY_EXTREME)
    kind = incident.type
    if kind == _T.INCIDENT_TYPE_FIRE:
        return ("Evacuate",)
    if kind == _T.INCIDENT_TYPE_GAS_RELEASE:
        return ("Evacuate",) if grave else ("Monitor",)
    if kind == _T.INCIDENT_TYPE_PERSON_DOWN:
        return ("Execute",)
    if kind == _T.INCIDENT_TYPE_INTRUSION:
        return ("Avoid",) if grave else ("Assess",)
    if kind in (_T.INCIDENT_TYPE_EQUIPMENT_FAULT, _T.INCIDENT_TYPE_COMM_LOSS, _T.INCIDENT_TYPE_ALARM_FLOOD):
        return ("Assess",)
    return ("Monitor",)


def headline(incident: Incident, language: Language, *, ended: bool) -> str:
    title = localized(incident.title, language) or event(incident, language)
    return f"{_LABELS['resolved'][language]}: {title}" if ended else title


def instruction(incident: Incident, language: Language) -> str:
    """The operator actions, one per line, each once (alarms of one rule share theirs); empty
    when the rules name none."""
    lines = (localized(action, language) for action in incident.actions)
    return "\n".join(dict.fromkeys(line for line in lines if line))


def zone_names(incident: Incident, site: Site) -> list[str]:
    """The incident's zones by their registry names; an id the registry does not know as itself."""
    names = {zone.id: zone.name for zone in site.zones}
    return [names.get(zone, zone) for zone in incident.zones if zone]


def description(change: IncidentChange, site: Site, language: Language) -> str:
    """The incident as it is now, for people: what, where, which alarms, who has it, how it ended."""
    incident, entry = change.incident, change.entry

    def label(key: str) -> str:
        return _LABELS[key][language]

    status = _STATUS_WORDS.get(incident.status, {"ko": "알 수 없음", "en": "unknown"})[language]
    if incident.confirmed:
        status = f"{status}, {label('confirmed')}"
    lines = [f"{label('status')}: {status}", f"{label('site')}: {site.name}"]
    zones = zone_names(incident, site)
    if zones:
        lines.append(f"{label('zones')}: {', '.join(zones)}")
    alarms = list(_members(incident, language))
    if alarms:
        lines.append(f"{label('alarms')}: {'; '.join(alarms)}")
    if incident.counts:
        counts = ", ".join(f"{key} {incident.counts[key]}" for key in sorted(incident.counts))
        lines.append(f"{label('counts')}: {counts}")
    if incident.assignee:
        lines.append(f"{label('assignee')}: {incident.assignee}")
    if entry.what:
        lines.append(f"{label('change')}: {entry.what}")
    if entry.note:
        lines.append(f"{label('note')}: {entry.note}")
    if incident.status in ENDED and (incident.resolution_code or incident.resolution_note):
        lines.append(f"{label('resolution')}: {resolution(incident)}")
    return "\n".join(lines)


def resolution(incident: Incident) -> str:
    """`leak_isolated: valve closed`: the cause code and the person's note, either may be empty."""
    return ": ".join(part for part in (incident.resolution_code, incident.resolution_note) if part)


def _members(incident: Incident, language: Language) -> Iterable[str]:
    for member in incident.members:
        what = ", ".join(
            part
            for part in (
                member.kind,
                _LABELS["active"][language] if member.active else _LABELS["cleared"][language],
            )
            if part
        )
        yield f"{member.device or member.alarm_id} ({what})"
