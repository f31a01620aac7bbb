"""MooN voting groups: every member state combination of a 2oo3 group under each policy."""

from __future__ import annotations

from datetime import timedelta
from itertools import product

import pytest

from services.alarms.domain.model import AlarmClass, Priority, Rationale, Text
from services.alarms.domain.rules import FaultPolicy as Policy
from services.alarms.domain.rules import VotingGroup, VotingMember
from services.alarms.domain.voting import Member, vote

_TEXT = Text(ko="-", en="-")


def group(group_id: str, m: int, devices: tuple[str, ...], policy: Policy = Policy.TRIP) -> VotingGroup:
    return VotingGroup(
        id=group_id,
        site="ulsan-refinery",
        members=tuple(VotingMember(device=d) for d in devices),
        m=m,
        fault_policy=policy,
        priority=Priority.HIGH,
        alarm_class=AlarmClass.SAFETY,
        rationale=Rationale(_TEXT, _TEXT, _TEXT, timedelta(minutes=1)),
    )


GAS = group("fcc-2-h2s", 2, ("gd-1", "gd-2", "gd-3"))
DEVICES = tuple(member.device for member in GAS.members)

# Confirmed or not, by (members in alarm, members faulty or stale), for 2oo3, written out by hand.
EXPECTED: dict[Policy, dict[tuple[int, int], bool]] = {
    # A member that cannot be read is a vote toward the alarm.
    Policy.TRIP: {
        (0, 0): False, (1, 0): False, (2, 0): True, (3, 0): True,
        (0, 1): False, (1, 1): True, (2, 1): True,
        (0, 2): True, (1, 2): True,
        (0, 3): True,
    },
    # It does not count: two of the readable members are still needed.
    Policy.IGNORE: {
        (0, 0): False, (1, 0): False, (2, 0): True, (3, 0): True,
        (0, 1): False, (1, 1): False, (2, 1): True,
        (0, 2): False, (1, 2): False,
        (0, 3): False,
    },
    # 2oo3 -> 1oo2 -> 1oo1; with nothing readable, nothing confirms.
    Policy.DEGRADE: {
        (0, 0): False, (1, 0): False, (2, 0): True, (3, 0): True,
        (0, 1): False, (1, 1): True, (2, 1): True,
        (0, 2): False, (1, 2): True,
        (0, 3): False,
    },
}  # fmt: skip


@pytest.mark.parametrize("policy", list(Policy))
@pytest.mark.parametrize("states", list(product(list(Member), repeat=3)), ids="-".join)
def test_2oo3_confirms_as_its_policy_says_and_names_every_unreadable_member(
    policy: Policy, states: tuple[Member, Member, Member]
) -> None:
    verdict = vote(group(GAS.id, GAS.m, DEVICES, policy), dict(zip(DEVICES, states, strict=True)))

    active = tuple(m for m, s in zip(DEVICES, states, strict=True) if s is Member.ACTIVE)
    unreadable = tuple(
        m for m, s in zip(DEVICES, states, strict=True) if s in (Member.FAULTY, Member.STALE)
    )
    assert verdict.confirmed is EXPECTED[policy][(len(active), len(unreadable))]
    assert verdict.active == active
    # Whatever the policy, a faulty or stale member raises its own fault alarm.
    assert verdict.unreadable == unreadable
    assert verdict.readable == 3 - len(unreadable)


def test_a_member_never_heard_from_counts_as_stale() -> None:
    verdict = vote(GAS, {"gd-1": Member.ACTIVE})
    assert verdict.unreadable == ("gd-2", "gd-3")
    assert verdict.confirmed  # trip: the two silent detectors vote with the one in alarm


def test_a_cross_modal_group_confirms_fire_from_a_flame_detector_and_a_camera() -> None:
    fire = group("boiler-fire", 2, ("fd-1", "td-1", "cam-3"), Policy.IGNORE)
    flame_only = {"fd-1": Member.ACTIVE, "td-1": Member.INACTIVE, "cam-3": Member.INACTIVE}
    assert not vote(fire, flame_only).confirmed
    verdict = vote(fire, {"fd-1": Member.ACTIVE, "td-1": Member.INACTIVE, "cam-3": Member.ACTIVE})
    assert verdict.confirmed and verdict.active == ("fd-1", "cam-3")


def test_degrade_reports_the_votes_it_needs() -> None:
    degrading = group("g", 2, ("a", "b", "c"), Policy.DEGRADE)
    verdict = vote(degrading, {"a": Member.FAULTY, "b": Member.INACTIVE, "c": Member.INACTIVE})
    assert (verdict.votes, verdict.required, verdict.readable) == (0, 1, 2)


def test_a_fault_or_staleness_outranks_a_held_alarm_value() -> None:
    assert Member.of(active=True, faulty=True) is Member.FAULTY
    assert Member.of(active=True, stale=True) is Member.STALE
    assert Member.of(active=True) is Member.ACTIVE
    assert Member.of(active=False) is Member.INACTIVE
