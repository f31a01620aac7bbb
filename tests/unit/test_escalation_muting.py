"""Maintenance muting as an incident climbs its policy: time is a parameter, every step asks
whether its notification is held.

A morning of work on FCC-2 of the Ulsan refinery, 09:00 to 12:00 Seoul time, on 10 June 2026.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.escalation.domain import policy as climbing
from services.escalation.domain.maintenance import MaintenanceWindow, OneOff, check_window
from services.escalation.domain.muting import Held, Subject, hold, safety_class
from services.escalation.domain.policy import Policy, Step

SEOUL = ZoneInfo("Asia/Seoul")
SITE = "ulsan-refinery"
FCC2_MORNING = MaintenanceWindow(
    id="w-fcc2",
    site=SITE,
    zone="fcc-2",
    timezone="Asia/Seoul",
    schedule=OneOff(start=datetime(2026, 6, 10, 9, 0), end=datetime(2026, 6, 10, 12, 0)),
    reason="FCC-2 compressor overhaul",
)
check_window(FCC2_MORNING)
WINDOWS = [FCC2_MORNING]
# Page the shift lead, then the plant manager every 30 minutes.
POLICY = Policy(
    id="p-1",
    tenant="ulsan-refining",
    steps=(Step(endpoints=("lead",), wait_s=1800), Step(endpoints=("manager",), wait_s=1800, repeat=10)),
)
EQUIPMENT_FAULT = Subject(SITE, ("fcc-2",), safety_class=False)
GAS_RELEASE = Subject(SITE, ("fcc-2",), safety_class=True)


def kst(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 6, 10, hour, minute, tzinfo=SEOUL)


def climb_from(
    opened: datetime, until: datetime, subject: Subject
) -> list[tuple[datetime, int, Held | None]]:
    """Each notification of the climb from `opened` to `until`: when, which step, held or not."""
    climb, notify = climbing.start(POLICY, "inc-1", "Moderate", opened)
    out = [(opened, notify.step, hold(WINDOWS, subject, "opened", opened))]
    while climb.due is not None and climb.due <= until:
        at = climb.due
        climb, step = climbing.advance(POLICY, climb, "Moderate", at)
        assert step is not None
        out.append((at, step.step, hold(WINDOWS, subject, "escalated", at)))
    return out


def test_every_step_of_a_non_safety_incident_during_the_window_is_held_until_it_ends() -> None:
    notifications = climb_from(kst(10, 0), kst(13, 0), EQUIPMENT_FAULT)

    held = [(at, step) for at, step, h in notifications if h is not None]
    sent = [(at, step) for at, step, h in notifications if h is None]
    assert held == [(kst(10), 0), (kst(10, 30), 1), (kst(11), 1), (kst(11, 30), 1)]
    assert sent == [(kst(12), 1), (kst(12, 30), 1), (kst(13), 1)]
    reason = notifications[1][2]
    assert reason is not None
    assert reason.windows == ("w-fcc2",)
    assert reason.until == kst(12)
    assert "w-fcc2" in reason.reason and "2026-06-10T03:00:00+00:00" in reason.reason


def test_a_safety_incident_climbs_through_the_window_unheld() -> None:
    notifications = climb_from(kst(10, 0), kst(12, 0), GAS_RELEASE)

    assert len(notifications) == 5
    assert all(h is None for _, _, h in notifications)


def test_the_resolution_during_the_window_is_sent() -> None:
    assert hold(WINDOWS, EQUIPMENT_FAULT, "acknowledged", kst(10, 15)) is not None
    assert hold(WINDOWS, EQUIPMENT_FAULT, "resolved", kst(10, 15)) is None
    assert hold(WINDOWS, EQUIPMENT_FAULT, "closed", kst(10, 15)) is None


def test_an_incident_reaching_a_live_zone_or_no_zone_is_not_held_by_a_zone_window() -> None:
    spanning = Subject(SITE, ("fcc-2", "cdu-1"), safety_class=False)
    nowhere = Subject(SITE, (), safety_class=False)
    elsewhere = Subject("mipo-aromatics", ("fcc-2",), safety_class=False)

    for subject in (spanning, nowhere, elsewhere):
        assert hold(WINDOWS, subject, "opened", kst(10)) is None


def test_the_window_start_is_inclusive_and_its_end_exclusive() -> None:
    assert hold(WINDOWS, EQUIPMENT_FAULT, "opened", kst(9) - timedelta(microseconds=1)) is None
    assert hold(WINDOWS, EQUIPMENT_FAULT, "opened", kst(9)) is not None
    assert hold(WINDOWS, EQUIPMENT_FAULT, "opened", kst(12) - timedelta(microseconds=1)) is not None
    assert hold(WINDOWS, EQUIPMENT_FAULT, "opened", kst(12)) is None


def test_safety_class_comes_from_the_type_or_any_alarm() -> None:
    assert safety_class("gas_release", [])
    assert safety_class("equipment_fault", ["equipment", "safety"])
    assert not safety_class("equipment_fault", ["equipment", "process"])
    assert not safety_class("comm_loss", [])
