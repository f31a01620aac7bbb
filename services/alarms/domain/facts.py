"""What one transition counts for in the ISA-18.2 figures (alarm rate, ack time, shelved counts).

Pure: the KPI and audit layers store these beside the transition instead of re-deriving them
from state pairs, so every reader counts an activation the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from services.alarms.domain.model import AlarmState, Transition
from services.alarms.domain.state import OVERLAY_STATES, PointState

_RISEN_FROM = frozenset({AlarmState.NORM, AlarmState.RTNUN})


@dataclass(frozen=True, slots=True)
class TransitionFacts:
    # The condition rose and the operator was alarmed: what ISA-18.2 alarm rates count.
    activation: bool
    # Shown again as an overlay ended with the condition still active: presented to the operator,
    # but not a new activation.
    reannunciation: bool
    # The condition returned to normal while annunciated (UNACK or ACKED before).
    returned: bool
    # An ack: how long the alarm (or its latched return) had waited for it.
    ack_latency: timedelta | None
    # SHLVD, DSUPR or OOSRV when this transition entered one (for the shelved / suppressed /
    # out-of-service counts).
    entered_overlay: AlarmState | None


def facts(before: PointState, transition: Transition) -> TransitionFacts:
    """The facts of `transition`, which `apply` returned for `before`."""
    into_unack = transition.new is AlarmState.UNACK
    acked = transition.action is not None and transition.action.action == "ack"
    waited_since = before.unack_since
    return TransitionFacts(
        activation=into_unack and transition.old in _RISEN_FROM,
        reannunciation=into_unack and transition.old in OVERLAY_STATES,
        returned=transition.old in (AlarmState.UNACK, AlarmState.ACKED) and not transition.active,
        ack_latency=transition.at - waited_since if acked and waited_since is not None else None,
        entered_overlay=transition.new if transition.new in OVERLAY_STATES else None,
    )
