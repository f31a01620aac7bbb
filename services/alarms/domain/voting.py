"""MooN voting: a group's confirmed alarm from its members' conditions. Pure.

A voting group (two of three gas detectors in a zone; a flame detector, a heat detector and a
camera's fire detection) confirms its alarm when M of its N members are in alarm. Members may be
of different kinds: a cross-modal group is only a group whose members are sensors and cameras.

A member that is faulty (bad quality) or stale (no news) cannot be read. The group's policy says
how it counts (IEC 61511 / ISA-TR84.00.07 practice):
- `trip`: as a vote for the alarm (fail-safe: what cannot be seen is assumed dangerous);
- `ignore`: not at all (M of the N - f readable members still needed);
- `degrade`: each unreadable member lowers both: M - f of N - f (2oo3 -> 1oo2 -> 1oo1), never
  below one vote; a group with no readable member confirms nothing.
Whatever the policy, each unreadable member is named in the verdict, so its own fault alarm is
raised: a fault never hides inside a group.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from services.alarms.domain.rules import FaultPolicy, VotingGroup


class Member(enum.StrEnum):
    """A member's condition as the group sees it."""

    INACTIVE = "inactive"
    ACTIVE = "active"
    FAULTY = "faulty"  # bad quality: its readings cannot be trusted
    STALE = "stale"  # no observation for its stale time

    @staticmethod
    def of(*, active: bool, faulty: bool = False, stale: bool = False) -> Member:
        """A member from its point conditions; a fault or staleness outranks a held alarm value."""
        if faulty:
            return Member.FAULTY
        if stale:
            return Member.STALE
        return Member.ACTIVE if active else Member.INACTIVE


@dataclass(frozen=True, slots=True)
class Verdict:
    """The group's decision and how it was reached."""

    confirmed: bool
    votes: int  # members counted toward the alarm
    required: int  # votes needed under the policy, with the members as they are
    readable: int  # members whose condition could be read (not faulty, not stale)
    active: tuple[str, ...]  # members in alarm, in the group's order
    unreadable: tuple[str, ...]  # faulty or stale members: each raises its own fault alarm


def vote(group: VotingGroup, members: Mapping[str, Member]) -> Verdict:
    """Decide the group's alarm from its members' conditions, keyed by device id (a device votes
    once in a group: the rules file refuses a repeat). A member missing from `members` has not
    been heard: stale."""
    active: list[str] = []
    unreadable: list[str] = []
    for member in group.members:
        device = member.device
        state = members.get(device, Member.STALE)
        if state is Member.ACTIVE:
            active.append(device)
        elif state is not Member.INACTIVE:
            unreadable.append(device)
    faults = len(unreadable)
    readable = len(group.members) - faults
    if group.fault_policy is FaultPolicy.TRIP:
        votes, required = len(active) + faults, group.m
    elif group.fault_policy is FaultPolicy.IGNORE:
        votes, required = len(active), group.m
    else:
        votes, required = len(active), max(group.m - faults, 1)
    # Under ignore and degrade only readable members vote, so with none readable nothing confirms.
    return Verdict(votes >= required, votes, required, readable, tuple(active), tuple(unreadable))
