"""What can happen to one alarm point, as plain frozen data, and how a request is refused.

Three sources of events reach a point (state.py applies them):
- its condition, decided by evaluation: `Activate`, `Clear` (cause: observation ids, or the
  evaluation timer that decided it: on_delay, off_delay, stale);
- a person: `Ack`, `Shelve`, `Unshelve`, `Suppress`, `Unsuppress`, `OutOfService`,
  `ReturnToService` (cause: who and why);
- a timer of its own falling due: `TimerDue` (a timed shelve expires). Timers are data: the
  caller asks `next_due(state)` when to send one, and nothing sleeps.

Every event carries its time; the state machine never reads a clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.alarms.domain.model import AlarmState, OperatorAction
from services.common.errors import SafetyhubError


class ShelveKind(enum.StrEnum):
    TIMED = "timed"  # ends at `shelved_until`
    ONE_SHOT = "one_shot"  # ends when the condition next clears (or at the class maximum)


class SuppressionKind(enum.StrEnum):
    """Why a point is suppressed by design. Several may hold at once; DSUPR lasts until all end."""

    MAINTENANCE = "maintenance"  # its zone is in maintenance
    PERMIT_TO_WORK = "permit_to_work"  # hot work or entry under a permit
    SCHEDULE = "schedule"  # a recurring window (a unit shut down at night)
    API = "api"  # a person or a system asked through the API


# --- Condition ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Activate:
    at: datetime
    observation_ids: tuple[str, ...] = ()
    timer: str | None = None  # on_delay or stale when a timer, not an observation, decided it
    # The snapshot reference of the detection that decided it; empty when it carried none.
    snapshot: str = ""


@dataclass(frozen=True, slots=True)
class Clear:
    at: datetime
    observation_ids: tuple[str, ...] = ()
    timer: str | None = None  # off_delay
    latching: bool = False  # the rule's `latching`, passed in so a reloaded rule applies at once


# --- People -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ack:
    at: datetime
    by: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Shelve:
    at: datetime
    by: str
    reason: str
    duration: timedelta | None  # None: one-shot, until the condition next clears
    max_duration: timedelta | None = None  # the rule's class maximum; None: no cap

    @property
    def kind(self) -> ShelveKind:
        return ShelveKind.ONE_SHOT if self.duration is None else ShelveKind.TIMED


@dataclass(frozen=True, slots=True)
class Unshelve:
    at: datetime
    by: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Suppress:
    at: datetime
    kind: SuppressionKind
    by: str  # a person, or the permit / schedule that asked
    reason: str


@dataclass(frozen=True, slots=True)
class Unsuppress:
    at: datetime
    kind: SuppressionKind
    by: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class OutOfService:
    at: datetime
    by: str
    reason: str


@dataclass(frozen=True, slots=True)
class ReturnToService:
    at: datetime
    by: str
    reason: str = ""


# --- Timers -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimerDue:
    """A timer the point asked for (`next_due`) fell due; early or stale ones change nothing."""

    at: datetime


Condition = Activate | Clear
Request = Ack | Shelve | Unshelve | Suppress | Unsuppress | OutOfService | ReturnToService
Event = Condition | Request | TimerDue

# The action names operator actions carry (OperatorAction.action), also the API's verbs.
ACTION_NAMES: dict[type[Request], str] = {
    Ack: "ack",
    Shelve: "shelve",
    Unshelve: "unshelve",
    Suppress: "suppress",
    Unsuppress: "unsuppress",
    OutOfService: "out_of_service",
    ReturnToService: "return_to_service",
}


def operator_action(request: Request) -> OperatorAction:
    """The person and reason of a request, as the transition it causes records them."""
    return OperatorAction(person=request.by, action=ACTION_NAMES[type(request)], reason=request.reason)


# --- Refusals -----------------------------------------------------------------------------------


class AlarmActionError(SafetyhubError):
    """A request on an alarm point was refused. Names the action and the point's current state."""

    def __init__(self, action: str, state: AlarmState, detail: str) -> None:
        self.action = action
        self.state = state
        self.detail = detail
        super().__init__(f"{action} refused in state {state}: {detail}")


class IllegalAction(AlarmActionError):
    """The action does not apply in the current state (ack on NORM, unshelve when not shelved).
    The API answers 409 with the state."""


class InvalidAction(AlarmActionError):
    """A field of the request is wrong whatever the state (a shelve longer than the class allows,
    a missing reason). The API answers 422 naming `field`."""

    def __init__(self, action: str, state: AlarmState, field: str, detail: str) -> None:
        self.field = field
        super().__init__(action, state, detail)
