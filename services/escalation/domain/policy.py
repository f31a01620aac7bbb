"""Escalation policies and the climb of one incident up their steps. Pure: time is a parameter.

A policy says, for the incidents of a tenant it takes (sites, types, least severity), whom to
notify and how long to wait: ordered steps, each "notify these endpoints, wait N seconds, repeat
up to K times", then the next step (or the step `next` names, always a later one: a policy never
loops). The acknowledgement deadline per severity caps every wait: an Extreme incident nobody
acknowledged climbs after at most its deadline, whatever the step says.

A climb is where one incident is: its step, its round within the step, when the next
notification is due. `start` notifies the first step; `advance` runs when the climb is due and
reads the policy as it is now, so a policy changed while incidents climb applies from their next
step. Acknowledgement or resolution stops the climb (`stop`); what the resolution sends is the
service's concern (every endpoint that was notified hears of it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from services.escalation.domain.endpoint import SEVERITY_RANK


class InvalidPolicy(ValueError):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    endpoints: tuple[str, ...]
    wait_s: float
    repeat: int = 0  # notifications of this step beyond the first
    next: int | None = None  # the step after this one; None: the following one


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    id: str
    tenant: str
    steps: tuple[Step, ...]
    sites: frozenset[str] | None = None
    types: frozenset[str] | None = None
    min_severity: str = "Unknown"
    # Severity -> seconds: no wait of an incident of that severity is longer.
    ack_deadlines_s: Mapping[str, float] = field(default_factory=dict)
    position: int = 0  # policies are tried in this order; the first that takes an incident wins

    def takes(self, *, site: str, severity: str, incident_type: str) -> bool:
        if self.sites is not None and site not in self.sites:
            return False
        if self.types is not None and incident_type not in self.types:
            return False
        return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK[self.min_severity]

    def wait(self, step: Step, severity: str) -> timedelta:
        deadline = self.ack_deadlines_s.get(severity)
        seconds = step.wait_s if deadline is None else min(step.wait_s, deadline)
        return timedelta(seconds=seconds)

    def after(self, index: int) -> int:
        following = self.steps[index].next
        return index + 1 if following is None else following


def check_steps(steps: Sequence[Step], known_endpoints: set[str]) -> None:
    """InvalidPolicy naming `steps[i].<field>` for what cannot be."""
    if not steps:
        raise InvalidPolicy("steps", "at least one step")
    for i, step in enumerate(steps):
        if not step.endpoints:
            raise InvalidPolicy(f"steps[{i}].endpoints", "a step must name at least one endpoint")
        unknown = [e for e in step.endpoints if e not in known_endpoints]
        if unknown:
            raise InvalidPolicy(f"steps[{i}].endpoints", f"no endpoint '{unknown[0][:64]}' of this tenant")
        if step.wait_s < 0:
            raise InvalidPolicy(f"steps[{i}].waitS", "a wait cannot be negative")
        if step.repeat < 0:
            raise InvalidPolicy(f"steps[{i}].repeat", "cannot be negative")
        if step.next is not None:
            if step.next <= i:
                raise InvalidPolicy(f"steps[{i}].next", f"step {step.next} is not after step {i}: a loop")
            if step.next >= len(steps):
                raise InvalidPolicy(f"steps[{i}].next", f"there is no step {step.next}")


def choose(policies: Sequence[Policy], *, site: str, severity: str, incident_type: str) -> Policy | None:
    """The first policy, by position, that takes the incident."""
    for policy in sorted(policies, key=lambda p: (p.position, p.id)):
        if policy.takes(site=site, severity=severity, incident_type=incident_type):
            return policy
    return None


@dataclass(frozen=True, slots=True)
class Climb:
    incident_id: str
    policy_id: str
    step: int
    round: int  # 0: the step's first notification; up to the step's `repeat`
    due: datetime | None  # the next notification; None: the climb is over
    stopped: str = ""  # why it is over: acknowledged, resolved, top (no step left), policy gone

    @property
    def climbing(self) -> bool:
        return self.due is not None


@dataclass(frozen=True, slots=True)
class Notify:
    """Notify these endpoints now, as step `step`, round `round`."""

    endpoints: tuple[str, ...]
    step: int
    round: int


def start(policy: Policy, incident_id: str, severity: str, now: datetime) -> tuple[Climb, Notify]:
    first = policy.steps[0]
    climb = Climb(incident_id, policy.id, 0, 0, now + policy.wait(first, severity))
    return climb, Notify(first.endpoints, 0, 0)


def advance(policy: Policy | None, climb: Climb, severity: str, now: datetime) -> tuple[Climb, Notify | None]:
    """The climb when its due time came: the next notification, or the end of the climb."""
    if climb.due is None or now < climb.due:
        return climb, None
    if policy is None:
        return replace(climb, due=None, stopped="policy gone"), None
    index, round_ = climb.step, climb.round + 1
    if index >= len(policy.steps) or round_ > policy.steps[index].repeat:
        index, round_ = (policy.after(index) if index < len(policy.steps) else len(policy.steps)), 0
    if index >= len(policy.steps):
        return replace(climb, due=None, stopped="top"), None
    step = policy.steps[index]
    moved = replace(
        climb, policy_id=policy.id, step=index, round=round_, due=now + policy.wait(step, severity)
    )
    return moved, Notify(step.endpoints, index, round_)


def stop(climb: Climb, why: str) -> Climb:
    return climb if climb.due is None else replace(climb, due=None, stopped=why)
