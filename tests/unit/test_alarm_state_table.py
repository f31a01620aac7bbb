"""Every event in every state of an alarm point: the whole ISA-18.2 state table, row by row.

Each row starts from a point brought to that state by real events (`+`: the condition is active,
`-`: inactive; SHLVD1: a one-shot shelve), applies one event (columns: `clear/L` a clear on a
latching rule, `>cap` a shelve past the class maximum, `due` the time every shelve falls due)
and expects a new state, `-` (no transition: nothing an operator sees changes), `409`
(IllegalAction naming the state) or `422` (InvalidAction naming the field).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.alarms.domain.actions import (
    Ack,
    Activate,
    Clear,
    Event,
    IllegalAction,
    InvalidAction,
    OutOfService,
    ReturnToService,
    Shelve,
    Suppress,
    SuppressionKind,
    TimerDue,
    Unshelve,
    Unsuppress,
)
from services.alarms.domain.model import AlarmState
from services.alarms.domain.state import apply
from tests.unit.alarm_points import at, check_consistent, run

HOUR = timedelta(hours=1)
MAINTENANCE = SuppressionKind.MAINTENANCE
UP = Activate(at(1), ("o1",))

# Each start: the events that bring a fresh point there.
STARTS: dict[str, list[Event]] = {
    "NORM": [],
    "UNACK": [UP],
    "ACKED": [UP, Ack(at(2), "kim")],
    "RTNUN": [UP, Clear(at(2), ("o2",))],
    "SHLVD+": [UP, Shelve(at(2), "kim", "sensor swap", HOUR)],
    "SHLVD-": [Shelve(at(2), "kim", "sensor swap", HOUR)],
    "SHLVD1+": [UP, Shelve(at(2), "kim", "known leak", None, max_duration=HOUR)],
    "SHLVD1-": [Shelve(at(2), "kim", "known leak", None, max_duration=HOUR)],
    "DSUPR+": [UP, Suppress(at(2), MAINTENANCE, "permit-7", "zone in maintenance")],
    "DSUPR-": [Suppress(at(2), MAINTENANCE, "permit-7", "zone in maintenance")],
    "OOSRV+": [UP, OutOfService(at(2), "lee", "detector removed")],
    "OOSRV-": [OutOfService(at(2), "lee", "detector removed")],
}

NOW = at(2) + HOUR  # when every shelve above falls due
EVENTS: dict[str, Event] = {
    "act": Activate(NOW, ("o9",)),
    "clear": Clear(NOW, ("o9",)),
    "clear/L": Clear(NOW, ("o9",), latching=True),
    "ack": Ack(NOW, "kim"),
    "shelve": Shelve(NOW, "kim", "nuisance", timedelta(minutes=30), max_duration=HOUR),
    "shelve1": Shelve(NOW, "kim", "nuisance", None, max_duration=HOUR),
    ">cap": Shelve(NOW, "kim", "nuisance", 2 * HOUR, max_duration=HOUR),
    "unshelve": Unshelve(NOW, "kim"),
    "supp": Suppress(NOW, MAINTENANCE, "permit-7", "zone in maintenance"),
    "unsupp": Unsuppress(NOW, MAINTENANCE, "permit-7"),
    "oos": OutOfService(NOW, "lee", "calibration"),
    "rts": ReturnToService(NOW, "lee"),
    "due": TimerDue(NOW),
}

TABLE = """
start   act   clear clear/L ack   shelve shelve1 >cap unshelve supp  unsupp oos   rts   due
NORM    UNACK -     -       409   SHLVD  SHLVD   422  409      DSUPR 409    OOSRV 409   -
UNACK   -     RTNUN RTNUN   ACKED SHLVD  SHLVD   422  409      DSUPR 409    OOSRV 409   -
ACKED   -     NORM  RTNUN   409   SHLVD  SHLVD   422  409      DSUPR 409    OOSRV 409   -
RTNUN   UNACK -     -       NORM  SHLVD  SHLVD   422  409      DSUPR 409    OOSRV 409   -
SHLVD+  -     -     -       409   409    409     409  UNACK    DSUPR 409    OOSRV 409   UNACK
SHLVD-  -     -     -       409   409    409     409  NORM     DSUPR 409    OOSRV 409   NORM
SHLVD1+ -     NORM  NORM    409   409    409     409  UNACK    DSUPR 409    OOSRV 409   UNACK
SHLVD1- -     -     -       409   409    409     409  NORM     DSUPR 409    OOSRV 409   NORM
DSUPR+  -     -     -       409   409    409     409  409      -     UNACK  OOSRV 409   -
DSUPR-  -     -     -       409   409    409     409  409      -     NORM   OOSRV 409   -
OOSRV+  -     -     -       409   409    409     409  409      -     409    409   UNACK -
OOSRV-  -     -     -       409   409    409     409  409      -     409    409   NORM  -
"""


def shown(start: str) -> str:
    return start.rstrip("+-1")


def rows() -> list[tuple[str, str, str]]:
    header, *lines = TABLE.strip().splitlines()
    events = header.split()[1:]
    cases = []
    for line in lines:
        start, *cells = line.split()
        assert len(cells) == len(events), start
        cases.extend((start, event, cell) for event, cell in zip(events, cells, strict=True))
    return cases


def test_the_table_covers_every_start_and_every_event() -> None:
    assert {(s, e) for s, e, _ in rows()} == {(s, e) for s in STARTS for e in EVENTS}
    assert {shown(s) for s in STARTS} == set(AlarmState)


@pytest.mark.parametrize(("start", "event", "expected"), rows())
def test_state_table(start: str, event: str, expected: str) -> None:
    before, _ = run(STARTS[start])
    assert before.state == shown(start)
    if expected in ("409", "422"):
        error = IllegalAction if expected == "409" else InvalidAction
        with pytest.raises(error) as refused:
            apply(before, EVENTS[event])
        assert type(refused.value) is error
        assert refused.value.state is before.state
        assert str(before.state) in str(refused.value)
        return
    after, transitions = apply(before, EVENTS[event])
    if expected == "-":
        assert transitions == []
        assert after.state is before.state
        return
    assert after.state == expected
    expected_transition = (before.state, after.state, NOW, after.active)
    assert [(t.old, t.new, t.at, t.active) for t in transitions] == [expected_transition]


@pytest.mark.parametrize("start", STARTS)
def test_every_start_is_consistent(start: str) -> None:
    point, _ = run(STARTS[start])
    check_consistent(point)
    assert point.active is (start.endswith("+") or start in ("UNACK", "ACKED"))
