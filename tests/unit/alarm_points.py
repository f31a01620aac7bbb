"""Builders shared by the alarm state machine tests: one point, a clock, and a fold of events."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from services.alarms.domain.actions import Event
from services.alarms.domain.model import AlarmState, PointId, Transition
from services.alarms.domain.state import PointState, apply

POINT = PointId(tenant="acme", site="ulsan", device="gd-101", rule="h2s-high-high")
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(events: Iterable[Event], start: PointState | None = None) -> tuple[PointState, list[Transition]]:
    """Apply events in order; every one must be accepted."""
    state = start or PointState(POINT)
    transitions: list[Transition] = []
    for event in events:
        state, caused = apply(state, event)
        transitions.extend(caused)
    return state, transitions


def check_consistent(point: PointState) -> None:
    """What must hold of any point, whatever happened to it."""
    if point.out_of_service is not None:
        assert point.state is AlarmState.OOSRV
    elif point.suppressions:
        assert point.state is AlarmState.DSUPR
    elif point.shelve is not None:
        assert point.state is AlarmState.SHLVD
    elif point.active:
        assert point.state in (AlarmState.UNACK, AlarmState.ACKED)
    else:
        assert point.state in (AlarmState.NORM, AlarmState.RTNUN)
    assert (point.shelve is None) == (point.shelved_by is None)
    assert (point.shelved_until is not None) <= (point.shelve is not None)
    assert (point.unack_since is not None) == (point.state in (AlarmState.UNACK, AlarmState.RTNUN))
    assert [s.kind for s in point.suppressions] == sorted({s.kind for s in point.suppressions})
