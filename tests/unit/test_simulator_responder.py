"""The simulated responder's decisions: acknowledge an open incident after a while, go on scene,
resolve one of its own once every alarm has returned and stayed so; never touch someone else's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.simulator.responder import Memory, ResponderConfig, Step, decide

ME = "demo-responder"
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
CONFIG = ResponderConfig(ack_after_s=8, travel_s=12, settle_s=10)


def listed(
    status: str, *, assignee: str | None = None, active: int = 2, kind: str = "gas_release"
) -> dict[str, Any]:
    return {
        "id": "01M809PETR5H7MZ0A9QK3W8XJT",
        "site": "ulsan-refinery",
        "type": kind,
        "status": status,
        "openedAt": T0.isoformat().replace("+00:00", "Z"),
        "assignee": assignee,
        "activeAlarms": active,
        "version": 3,
    }


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_an_open_incident_is_acknowledged_once_it_has_been_open_a_while() -> None:
    memory = Memory()
    assert decide(listed("open"), ME, at(5), CONFIG, memory) is None
    step = decide(listed("open"), ME, at(8), CONFIG, memory)
    assert step is not None and step.action == "ack"


def test_the_responder_goes_on_scene_after_travelling() -> None:
    memory = Memory()
    mine = listed("acknowledged", assignee=ME)
    assert decide(mine, ME, at(20), CONFIG, memory) is None  # first seen acknowledged now
    assert decide(mine, ME, at(31), CONFIG, memory) is None
    assert decide(mine, ME, at(32), CONFIG, memory) == Step(
        "dispatch", {"note": "On scene, reading the detectors."}
    )


def test_it_resolves_only_when_every_alarm_has_returned_and_stayed_returned() -> None:
    memory = Memory()
    assert decide(listed("dispatched", assignee=ME, active=1), ME, at(40), CONFIG, memory) is None
    assert decide(listed("dispatched", assignee=ME, active=0), ME, at(50), CONFIG, memory) is None
    # An alarm comes back: the wait starts again.
    assert decide(listed("dispatched", assignee=ME, active=1), ME, at(55), CONFIG, memory) is None
    assert decide(listed("dispatched", assignee=ME, active=0), ME, at(58), CONFIG, memory) is None
    assert decide(listed("dispatched", assignee=ME, active=0), ME, at(67), CONFIG, memory) is None
    step = decide(listed("dispatched", assignee=ME, active=0), ME, at(68), CONFIG, memory)
    assert step is not None and step.action == "resolve" and step.body["code"] == "leak_isolated"


def test_the_cause_follows_the_type() -> None:
    memory = Memory()
    fire = listed("dispatched", assignee=ME, active=0, kind="fire")
    decide(fire, ME, at(0), CONFIG, memory)
    step = decide(fire, ME, at(10), CONFIG, memory)
    assert step is not None and step.body["code"] == "fire_extinguished"
    flood = {
        **listed("dispatched", assignee=ME, active=0, kind="alarm_flood"),
        "id": "01M809PETR5H7MZ0A9QK3W8XJV",
    }
    decide(flood, ME, at(0), CONFIG, memory)
    step = decide(flood, ME, at(10), CONFIG, memory)
    assert step is not None and step.body["code"] == "other"


def test_someone_elses_incident_is_left_alone() -> None:
    memory = Memory()
    for status in ("acknowledged", "dispatched"):
        theirs = listed(status, assignee="kim.responder", active=0)
        for seconds in (0, 100, 1000):
            assert decide(theirs, ME, at(seconds), CONFIG, memory) is None
    assert decide(listed("resolved", assignee=ME, active=0), ME, at(1000), CONFIG, memory) is None


def test_what_it_remembers_of_incidents_no_longer_listed_is_forgotten() -> None:
    memory = Memory()
    decide(listed("acknowledged", assignee=ME), ME, at(0), CONFIG, memory)
    memory.forget_all_but(set())
    assert memory.since == {}
