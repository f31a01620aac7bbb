"""The ISA-18.2 state of one alarm point, and how each event changes it. Pure and synchronous.

`apply(point_state, event)` returns the new state and the transitions the event caused (none
when nothing an operator sees changed). Events are applied in the order given; the caller
orders them by time and asks `next_due(point_state)` when to send a `TimerDue`.

The states, as ISA-18.2 / IEC 62682 draw them:

    NORM  --activate-->  UNACK  --ack-->  ACKED  --clear-->  NORM
                           |                 `--clear, latching rule-->  RTNUN
                         clear
                           v
                         RTNUN  --ack-->  NORM
                                --activate-->  UNACK      (a new activation, annunciated again)

- UNACK and ACKED always mean the condition is active; NORM and RTNUN that it is not. A
  *latching* rule differs in one edge only: an acknowledged alarm whose condition clears goes to
  RTNUN, not NORM, so it stays on the operator's list until acknowledged after the return (its
  reset). One that clears while UNACK goes to RTNUN whether latching or not, and only an ack
  returns it to NORM. So every alarm a person has not seen return is still shown.
- SHLVD (shelved by a person, timed or one-shot), DSUPR (suppressed by design: maintenance,
  permit-to-work, schedule, API) and OOSRV (out of service) are overlays. They can hold at once;
  the point shows the strongest (OOSRV over DSUPR over SHLVD), and returns to the next one down
  when the strongest ends. Shelving is refused while suppressed or out of service: the alarm is
  not annunciated then, so there is nothing to shelve.
- Under an overlay the condition is still tracked (`active`) but annunciates nothing. When the
  last overlay ends the point shows NORM if the condition is inactive, else UNACK: the person
  must see an alarm that is active now, even if it was acknowledged before the overlay began.
  An acknowledgement pending when an overlay begins (UNACK, RTNUN) ends with it: shelving is
  itself a person's deliberate act on the alarm, and a suppressed point comes back fresh.
- A one-shot shelve ends when the condition next clears (active -> inactive); with a class
  maximum it also ends then at the latest. A timed shelve ends at `shelved_until` (`TimerDue`).
- Redelivery: a condition event carrying the same observation ids as the edge last applied in
  that direction changes nothing, so a redelivered batch never yields a second transition.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from services.alarms.domain.actions import (
    Ack,
    Activate,
    Clear,
    Event,
    IllegalAction,
    InvalidAction,
    OutOfService,
    Request,
    ReturnToService,
    Shelve,
    ShelveKind,
    Suppress,
    SuppressionKind,
    TimerDue,
    Unshelve,
    Unsuppress,
    operator_action,
)
from services.alarms.domain.model import AlarmState, OperatorAction, PointId, Transition

# The states of the alarm itself, below any overlay.
BASE_STATES = frozenset({AlarmState.NORM, AlarmState.UNACK, AlarmState.ACKED, AlarmState.RTNUN})
OVERLAY_STATES = frozenset({AlarmState.SHLVD, AlarmState.DSUPR, AlarmState.OOSRV})
SHELVE_EXPIRY = "shelve_expiry"


@dataclass(frozen=True, slots=True)
class Suppression:
    """One reason a point is suppressed by design; at most one per kind."""

    kind: SuppressionKind
    by: str
    reason: str
    since: datetime


@dataclass(frozen=True, slots=True)
class PointState:
    """Everything the state machine knows of one alarm point. Immutable: `apply` returns a new one."""

    id: PointId
    state: AlarmState = AlarmState.NORM
    active: bool = False  # the condition, tracked under overlays too
    shelve: ShelveKind | None = None
    shelved_until: datetime | None = None  # timed: its end; one-shot: the class maximum, if any
    shelved_by: OperatorAction | None = None
    suppressions: tuple[Suppression, ...] = ()  # sorted by kind
    out_of_service: OperatorAction | None = None
    changed_at: datetime | None = None  # time of the last transition
    # Since when it has waited for an ack (UNACK, RTNUN): for the ack latency of the next ack.
    unack_since: datetime | None = None
    # The observation ids of the last activation and the last clear, to ignore redeliveries.
    activated_by: tuple[str, ...] = ()
    cleared_by: tuple[str, ...] = ()
    # The snapshot of the detection that last raised it (kept through ack and return, replaced by
    # the next activation): what the alarm shows of the picture. Empty when that carried none.
    snapshot: str = ""

    def suppressed_for(self, kind: SuppressionKind) -> Suppression | None:
        return next((s for s in self.suppressions if s.kind == kind), None)


def next_due(point: PointState) -> datetime | None:
    """When this point needs a `TimerDue`, if ever. Store it; after a restart send it when due."""
    return point.shelved_until


def apply(point: PointState, event: Event) -> tuple[PointState, list[Transition]]:
    """The state after `event`, and the transitions it caused. Raises `IllegalAction` (409) or
    `InvalidAction` (422) for a request the point refuses; the state is then unchanged."""
    if isinstance(event, Activate | Clear):
        return _condition(point, event)
    if isinstance(event, TimerDue):
        return _timer(point, event)
    return _request(point, event)


# --- Condition ----------------------------------------------------------------------------------


def _condition(point: PointState, event: Activate | Clear) -> tuple[PointState, list[Transition]]:
    active = isinstance(event, Activate)
    ids = event.observation_ids
    if ids and ids == (point.activated_by if active else point.cleared_by):
        return point, []  # this very edge again: a redelivery
    if point.active == active:
        return point, []
    if isinstance(event, Activate):
        nxt = replace(point, active=True, activated_by=ids, snapshot=event.snapshot)
    else:
        nxt = replace(point, active=False, cleared_by=ids)
    if not active and point.shelve is ShelveKind.ONE_SHOT:
        nxt = _unshelved(nxt)
    if point.state in BASE_STATES:
        new = _edge(point.state, active, latching=isinstance(event, Clear) and event.latching)
    else:
        new = _shown(nxt)
    return _move(nxt, new, event.at, observation_ids=ids, timer=event.timer)


def _edge(state: AlarmState, active: bool, *, latching: bool) -> AlarmState:
    """The next base state when the condition changes (it did: the caller checked)."""
    if active:
        return AlarmState.UNACK  # from NORM, or from RTNUN: a new activation
    if state is AlarmState.UNACK:
        return AlarmState.RTNUN
    if state is AlarmState.ACKED:
        return AlarmState.RTNUN if latching else AlarmState.NORM
    return state


# --- Timers -------------------------------------------------------------------------------------


def _timer(point: PointState, event: TimerDue) -> tuple[PointState, list[Transition]]:
    if point.shelved_until is None or event.at < point.shelved_until:
        return point, []  # early, or a timer for a shelve that already ended
    nxt = _unshelved(point)
    return _move(nxt, _shown(nxt), event.at, timer=SHELVE_EXPIRY)


# --- People -------------------------------------------------------------------------------------


def _request(point: PointState, request: Request) -> tuple[PointState, list[Transition]]:
    action = operator_action(request)
    nxt = _requested(point, request, action)
    if nxt is point:
        return point, []
    if isinstance(request, Ack):
        new = AlarmState.ACKED if point.state is AlarmState.UNACK else AlarmState.NORM
    else:
        new = _shown(nxt)
    return _move(nxt, new, request.at, action=action)


def _requested(point: PointState, request: Request, action: OperatorAction) -> PointState:
    """The point with the request's overlay data applied; `point` itself when nothing changes."""
    state = point.state

    def refuse(detail: str) -> IllegalAction:
        return IllegalAction(action.action, state, detail)

    def require_reason() -> None:
        if not request.reason.strip():
            raise InvalidAction(action.action, state, "reason", "a reason is required")

    match request:
        case Ack():
            if state not in (AlarmState.UNACK, AlarmState.RTNUN):
                acked = state is AlarmState.ACKED
                raise refuse("already acknowledged" if acked else "nothing to acknowledge")
            return replace(point, unack_since=None)
        case Shelve():
            if state not in BASE_STATES:
                raise refuse(_NOT_SHELVABLE[state])
            require_reason()
            cap, duration = request.max_duration, request.duration
            if duration is not None and duration.total_seconds() <= 0:
                raise InvalidAction(action.action, state, "duration", "must be positive")
            if duration is not None and cap is not None and duration > cap:
                raise InvalidAction(action.action, state, "duration", f"at most {cap} for this alarm's class")
            until = duration if duration is not None else cap
            return replace(
                point,
                shelve=request.kind,
                shelved_until=None if until is None else request.at + until,
                shelved_by=action,
            )
        case Unshelve():
            if point.shelve is None:
                raise refuse("not shelved")
            return _unshelved(point)
        case Suppress():
            require_reason()
            if point.suppressed_for(request.kind) is not None:
                return point  # already suppressed for this: a schedule or permit may say it again
            added = Suppression(request.kind, request.by, request.reason, request.at)
            return replace(point, suppressions=tuple(sorted((*point.suppressions, added), key=_kind)))
        case Unsuppress():
            if point.suppressed_for(request.kind) is None:
                raise refuse(f"not suppressed for {request.kind}")
            return replace(point, suppressions=tuple(s for s in point.suppressions if s.kind != request.kind))
        case OutOfService():
            if point.out_of_service is not None:
                raise refuse("already out of service")
            require_reason()
            return replace(point, out_of_service=action)
        case ReturnToService():
            if point.out_of_service is None:
                raise refuse("not out of service")
            return replace(point, out_of_service=None)


_NOT_SHELVABLE = {
    AlarmState.SHLVD: "already shelved",
    AlarmState.DSUPR: "suppressed: not annunciated, nothing to shelve",
    AlarmState.OOSRV: "out of service: not annunciated, nothing to shelve",
}


def _kind(suppression: Suppression) -> str:
    return suppression.kind.value


# --- Shared -------------------------------------------------------------------------------------


def _unshelved(point: PointState) -> PointState:
    return replace(point, shelve=None, shelved_until=None, shelved_by=None)


def _shown(point: PointState) -> AlarmState:
    """The state to show after an overlay began or ended: the strongest overlay still holding,
    else the base state (NORM or UNACK by the condition when leaving the last overlay)."""
    if point.out_of_service is not None:
        return AlarmState.OOSRV
    if point.suppressions:
        return AlarmState.DSUPR
    if point.shelve is not None:
        return AlarmState.SHLVD
    if point.state in BASE_STATES:
        return point.state
    return AlarmState.UNACK if point.active else AlarmState.NORM


def _move(
    point: PointState,
    new: AlarmState,
    at: datetime,
    *,
    observation_ids: tuple[str, ...] = (),
    action: OperatorAction | None = None,
    timer: str | None = None,
) -> tuple[PointState, list[Transition]]:
    if new is point.state:
        return point, []
    if new is AlarmState.UNACK:
        unack_since: datetime | None = at
    elif new is AlarmState.RTNUN:
        # Returned unseen: still waiting since it rose. Latched after an ack: since its return.
        unack_since = point.unack_since or at
    else:
        unack_since = None
    transition = Transition(
        point=point.id,
        old=point.state,
        new=new,
        at=at,
        observation_ids=observation_ids,
        action=action,
        timer=timer,
        active=point.active,
    )
    return replace(point, state=new, changed_at=at, unack_since=unack_since), [transition]
