"""What people do to an incident: the lifecycle open -> acknowledged -> dispatched -> resolved ->
closed, and reopen. Pure: one function decides whether an action is allowed from a status and
what the status becomes; the service records it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from services.common.errors import SafetyhubError
from services.incidents.domain.model import Status


class Action(enum.StrEnum):
    ACK = "ack"
    ASSIGN = "assign"
    DISPATCH = "dispatch"
    RESOLVE = "resolve"
    CLOSE = "close"
    REOPEN = "reopen"
    COMMENT = "comment"
    ATTACH = "attach"  # a photo


_LIVE = frozenset({Status.OPEN, Status.ACKNOWLEDGED, Status.DISPATCHED})
_ALL = frozenset(Status)

# From which statuses each action is allowed, and the status it leaves (None: unchanged).
_TABLE: dict[Action, tuple[frozenset[Status], Status | None]] = {
    Action.ACK: (frozenset({Status.OPEN}), Status.ACKNOWLEDGED),
    # Taking an incident straight from open counts as acknowledging it.
    Action.DISPATCH: (frozenset({Status.OPEN, Status.ACKNOWLEDGED}), Status.DISPATCHED),
    Action.RESOLVE: (_LIVE, Status.RESOLVED),
    Action.CLOSE: (frozenset({Status.RESOLVED}), Status.CLOSED),
    Action.REOPEN: (frozenset({Status.RESOLVED, Status.CLOSED}), Status.OPEN),
    Action.ASSIGN: (_LIVE, None),
    Action.COMMENT: (_ALL, None),
    # A photo may come after the fact, as a comment may.
    Action.ATTACH: (_ALL, None),
}

# Why an incident was resolved: what a review will count.
CAUSE_CODES = frozenset(
    {
        "leak_isolated",
        "fire_extinguished",
        "person_rescued",
        "false_alarm",
        "equipment_repaired",
        "test",
        "other",
    }
)


class IncidentError(SafetyhubError):
    """An incident action or message the service refuses."""


class IllegalTransition(IncidentError):
    """The action is not allowed from the incident's current status."""

    def __init__(self, action: Action, status: Status) -> None:
        super().__init__(f"cannot {action} an incident that is {status}")
        self.action = action
        self.status = status


@dataclass(frozen=True, slots=True)
class Outcome:
    old: Status
    new: Status

    @property
    def changed(self) -> bool:
        return self.old is not self.new


def decide(action: Action, status: Status) -> Outcome:
    """The status `action` leaves an incident in; raises IllegalTransition if not allowed."""
    allowed, after = _TABLE[action]
    if status not in allowed:
        raise IllegalTransition(action, status)
    return Outcome(status, after if after is not None else status)
