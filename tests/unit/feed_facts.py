"""Incident and alarm facts for the feed's tests: a gas release at the refinery's FCC-2, with a
device id, a process value and a person's name in every free-text field, so a test can look for
them in whatever leaves."""

from __future__ import annotations

from datetime import UTC, datetime

from services.feed.domain.facts import AlarmFacts, IncidentFacts, Member, Position, SitePlaces

OPENED = datetime(2026, 11, 22, 0, 15, 3, tzinfo=UTC)
CHANGED = datetime(2026, 11, 22, 0, 21, 40, tzinfo=UTC)
DEVICE = "gd-fcc2-203"
VALUE = "37.5 ppm"
PERSON = "Kim Min-jun"
EXACT = Position(35.47801, 129.35488)
FCC2 = Position(35.4782, 129.35491)
SITE = Position(35.4768, 129.3529)
PLACES = SitePlaces(SITE, {"fcc-2": FCC2, "cdu-1": Position(35.4779, 129.3509)})
# What no redacted or counts event may ever carry.
SECRETS = (DEVICE, VALUE, PERSON, str(EXACT.lat), str(EXACT.lon))


def planted(text: str = "") -> str:
    return f"{text} {DEVICE} read {VALUE}, called {PERSON} at {EXACT.lat},{EXACT.lon}".strip()


def incident(**changes: object) -> IncidentFacts:
    values: dict[str, object] = {
        "event_id": "01KAMR8P0BNV6ZG3S3M2Q4C8TB",
        "tenant": "ulsan-refining",
        "site": "ulsan-refinery",
        "incident_id": "01KAMR2R1FQ4T5D3Y6Z8W9X0AB",
        "change": "acknowledged",
        "at": CHANGED,
        "type": "gas_release",
        "status": "acknowledged",
        "severity": "Extreme",
        "urgency": "Immediate",
        "certainty": "Observed",
        "confirmed": True,
        "opened_at": OPENED,
        "zones": ("fcc-2",),
        "position": EXACT,
        "title": planted("H2S release at"),
        "members": (
            Member(
                f"{DEVICE}--h2s-high-high",
                DEVICE,
                "h2s-high-high",
                "gas.h2s",
                "fcc-2",
                "safety",
                "emergency",
                True,
            ),
        ),
        "actions": (planted("Isolate"),),
        "assignee": PERSON,
        "resolution_code": "",
        "resolution_note": planted(),
        "counts": {},
        "what": planted("acknowledged by"),
        "note": planted(),
        "actor": PERSON,
    }
    values.update(changes)
    return IncidentFacts(**values)  # type: ignore[arg-type]


def alarm(**changes: object) -> AlarmFacts:
    values: dict[str, object] = {
        "event_id": "01KAMR2R1FQ4T5D3Y6Z8W9X0CD",
        "tenant": "ulsan-refining",
        "site": "ulsan-refinery",
        "alarm_id": f"{DEVICE}--h2s-high-high",
        "device": DEVICE,
        "rule": "h2s-high-high",
        "kind": "gas.h2s",
        "zone": "fcc-2",
        "condition": "high_high",
        "alarm_class": "safety",
        "priority": "emergency",
        "state": "UNACK",
        "active": True,
        "at": OPENED,
        "raised": True,
        "position": EXACT,
        "rationale": planted(),
        "actor": PERSON,
    }
    values.update(changes)
    return AlarmFacts(**values)  # type: ignore[arg-type]
