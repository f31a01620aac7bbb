"""The incident lifecycle as a responder meets it: allowed steps, and refusals naming the status."""

from __future__ import annotations

import pytest

from services.incidents.domain.lifecycle import Action, IllegalTransition, decide
from services.incidents.domain.model import Status


def test_a_responder_walks_an_incident_through_its_life() -> None:
    status = Status.OPEN
    for action, expected in [
        (Action.ACK, Status.ACKNOWLEDGED),
        (Action.ASSIGN, Status.ACKNOWLEDGED),
        (Action.DISPATCH, Status.DISPATCHED),
        (Action.COMMENT, Status.DISPATCHED),
        (Action.RESOLVE, Status.RESOLVED),
        (Action.REOPEN, Status.OPEN),
        (Action.RESOLVE, Status.RESOLVED),
        (Action.CLOSE, Status.CLOSED),
        (Action.COMMENT, Status.CLOSED),
        (Action.REOPEN, Status.OPEN),
    ]:
        status = decide(action, status).new
        assert status is expected, action


@pytest.mark.parametrize(
    ("action", "status"),
    [
        (Action.RESOLVE, Status.CLOSED),
        (Action.RESOLVE, Status.RESOLVED),
        (Action.ACK, Status.ACKNOWLEDGED),
        (Action.ACK, Status.DISPATCHED),
        (Action.DISPATCH, Status.RESOLVED),
        (Action.REOPEN, Status.OPEN),
        (Action.CLOSE, Status.OPEN),
        (Action.ASSIGN, Status.CLOSED),
    ],
)
def test_an_illegal_step_names_the_current_status(action: Action, status: Status) -> None:
    with pytest.raises(IllegalTransition) as refused:
        decide(action, status)
    assert refused.value.status is status
    assert str(status) in str(refused.value)


def test_a_second_ack_is_refused_not_repeated() -> None:
    first = decide(Action.ACK, Status.OPEN)
    assert first.changed
    with pytest.raises(IllegalTransition):
        decide(Action.ACK, first.new)
