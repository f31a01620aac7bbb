"""A flood incident on the feed: each of its changes carries hundreds of members; a policy that
does not share them never reads them, and `full` carries only the first-out few."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import msgspec
import pytest

from services.common.contracts import AlarmClass, AlarmPriority, IncidentChange, IncidentType
from services.feed.adapters.read import incident_facts
from services.feed.domain.facts import Member
from services.feed.domain.policy import SharingPolicy
from services.feed.domain.projection import MEMBERS_CARRIED, project_incident
from tests.unit.feed_facts import PLACES, incident

FLOOD = 500


def policy(level: str) -> SharingPolicy:
    return msgspec.convert({"level": level}, SharingPolicy)


def flood_change(members: int = FLOOD) -> IncidentChange:
    """An alarm flood's change as the incidents service announces it: members in joining order."""
    change = IncidentChange()
    change.incident_id = "01KAMR2R1FQ4T5D3Y6Z8W9X0AB"
    change.envelope.id = change.entry.id = "01KAMR8P0BNV6ZG3S3M2Q4C8TB"
    change.envelope.tenant, change.envelope.site = "ulsan-refining", "ulsan-refinery"
    change.entry.change = "updated"
    change.entry.time.seconds = change.incident.opened_at.seconds = 1_795_000_000
    change.incident.type = IncidentType.Value("INCIDENT_TYPE_ALARM_FLOOD")
    change.incident.zones.append("fcc-2")
    for n in range(members):
        m = change.incident.members.add()
        m.alarm_id, m.device, m.rule = f"pt-{n:04d}--hi", f"pt-{n:04d}", "hi"
        m.kind, m.zone, m.active = "pressure", "fcc-2", n % 2 == 0
        m.alarm_class = AlarmClass.Value("ALARM_CLASS_PROCESS")
        m.priority = AlarmPriority.Value("ALARM_PRIORITY_LOW")
    change.incident.counts.update({"total": members, "class.process": members, "priority.low": members})
    return change


def test_full_carries_the_first_out_members_and_the_totals_in_counts() -> None:
    shared = project_incident(incident_facts(flood_change()), policy("full"), PLACES)

    assert shared is not None
    assert [m["device"] for m in shared["members"]] == [f"pt-{n:04d}" for n in range(MEMBERS_CARRIED)]
    assert shared["members"][1] == {
        "alarm_id": "pt-0001--hi",
        "device": "pt-0001",
        "rule": "hi",
        "kind": "pressure",
        "zone": "fcc-2",
        "alarm_class": "process",
        "priority": "low",
        "active": False,
        "snapshot": None,
    }
    assert shared["counts"] == {"total": FLOOD, "class.process": FLOOD, "priority.low": FLOOD}


def test_an_incident_of_few_members_carries_them_all() -> None:
    shared = project_incident(incident_facts(flood_change(3)), policy("full"), PLACES)

    assert shared is not None
    assert [m["alarm_id"] for m in shared["members"]] == ["pt-0000--hi", "pt-0001--hi", "pt-0002--hi"]


class Untouchable(Sequence[Member]):
    """Members that fail when read: what a projection must never do below `full`."""

    def __len__(self) -> int:
        return FLOOD

    def __getitem__(self, index: object) -> NoReturn:
        raise AssertionError("a member was read")


@pytest.mark.parametrize("level", ["none", "counts", "redacted"])
def test_below_full_no_member_is_read(level: str) -> None:
    shared = project_incident(incident(members=Untouchable()), policy(level), PLACES)

    assert shared is None or "members" not in shared


def test_a_flood_change_read_gives_each_member_asked_for() -> None:
    facts = incident_facts(flood_change())

    assert len(facts.members) == FLOOD
    assert facts.members[-1].device == "pt-0499"
    assert [m.alarm_id for m in facts.members[2:4]] == ["pt-0002--hi", "pt-0003--hi"]
