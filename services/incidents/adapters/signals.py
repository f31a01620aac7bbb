"""Alarm messages read as fusion signals: the transition with where its device stands (the site
registry) and what it measures (the alarm rules), activations and returns only.

The ALARMS stream carries a point's state, not its kind or place: those come from the same site
files and alarm rule files the alarm engine reads, so both services see one plant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.msg import Msg

from services.alarms.adapters.decode import TRANSITIONS_IN, read_flood, transition_from_proto
from services.alarms.adapters.messages import AlarmView, flood_id, transition_id
from services.alarms.domain.model import AlarmState, Transition
from services.alarms.domain.rules import RuleSet
from services.alarms.domain.workset import VOTE_RULE
from services.common.sites.registry import SiteRegistry
from services.incidents.domain.fusion import FloodSignal
from services.incidents.domain.model import Signal, Text

# States in which the alarm's condition counts as present for fusion; a latched UNACK whose
# condition cleared reports `active` false and counts as returned.
_ALARMED = frozenset({AlarmState.UNACK, AlarmState.ACKED})


@dataclass(frozen=True, slots=True)
class AlarmMessage:
    """One message of ALARMS as it arrived: its id, and the transition or flood edge it holds."""

    message_id: str
    transition: Transition | None = None
    alarm: AlarmView | None = None
    flood: FloodSignal | None = None
    correlation_id: str = ""


def read_alarm_message(msg: Msg) -> AlarmMessage:
    """Decoder for the `alarm.>` consumer (undecodable: Poison, dead-lettered)."""
    message = TRANSITIONS_IN.decode(msg)
    env = message.envelope
    TRANSITIONS_IN.check_subject(msg, env.tenant, env.site, message.alarm_id)
    transition, alarm = transition_from_proto(message)
    # The transition's own id, derived from its point, state, time and cause, not the header: a
    # copy published again under another message id is still recognised as the same alarm.
    message_id = transition_id(transition)
    # The chain continues: an incident opened by an alarm carries its observation's correlation id.
    chain = env.correlation_id or message_id
    return AlarmMessage(message_id, transition=transition, alarm=alarm, correlation_id=chain)


def read_flood_message(msg: Msg) -> AlarmMessage:
    """Decoder for the `alarmflood.>` consumer."""
    edge = read_flood(msg)
    message_id = flood_id(edge)
    flood = FloodSignal(
        id=message_id,
        tenant=edge.tenant,
        site=edge.site,
        began=edge.began,
        at=edge.at,
        since=edge.since,
        window=edge.window,
        activations=edge.activations,
        correlation_id=message_id,
    )
    return AlarmMessage(message_id, flood=flood)


class SignalReader:
    """Turns transitions into signals, looking kinds and places up in the registries in use."""

    def __init__(self, sites: Callable[[], SiteRegistry], rules: Callable[[], RuleSet]) -> None:
        self._sites = sites
        self._rules = rules

    def signal(self, message: AlarmMessage) -> Signal | None:
        """The activation or return the message is, or None for any other transition (an ack,
        a shelve: fusion follows conditions, people's handling of alarms is the alarm engine's)."""
        transition, alarm = message.transition, message.alarm
        if transition is None or alarm is None:
            return None
        was = transition.old in _ALARMED
        now = transition.new in _ALARMED and transition.active
        # A return is the condition clearing; an alarm shelved or suppressed while its condition
        # holds is hidden from the console, not gone from the plant.
        if was == now or (was and transition.active):
            return None
        point = transition.point
        device, kind, confirmed = point.device, self._kind(point.site, point.rule), False
        if point.rule == VOTE_RULE:
            device, kind = self._group_anchor(point.site, point.device)
            confirmed = True
        place = self._sites().device(point.site, device)
        position = (place.position.lat, place.position.lon) if place is not None else None
        action = alarm.rationale.action
        return Signal(
            id=message.message_id,
            tenant=point.tenant,
            site=point.site,
            alarm_id=point.alarm_id,
            device=point.device,
            rule=point.rule,
            kind=kind,
            zone=place.zone if place is not None else None,
            position=position,
            alarm_class=alarm.alarm_class,
            priority=alarm.priority,
            condition=alarm.condition,
            active=now,
            at=transition.at,
            confirmed=confirmed and now,
            action=Text(ko=action.ko, en=action.en) if action.en or action.ko else None,
            correlation_id=message.correlation_id,
            snapshot=alarm.snapshot,
        )

    def _kind(self, site: str, rule_id: str) -> str | None:
        rule = self._rules().index.rule(rule_id)
        return rule.selector.kind if rule is not None else None

    def _group_anchor(self, site: str, group_id: str) -> tuple[str, str | None]:
        """A voting group's place and kind: its first member's."""
        group = next((g for g in self._rules().groups_of(site) if g.id == group_id), None)
        if group is None or not group.members:
            return group_id, None
        first = group.members[0]
        kind = first.kind or (self._kind(site, first.rule) if first.rule else None)
        return first.device, kind
