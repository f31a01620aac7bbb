"""Alarm transitions and floods as bus messages: the domain vocabulary (domain/model.py) in the
protobuf contracts (proto/safetyhub/v1/alarm.proto), ready for `UnitOfWork.emit`. decode.py reads
them back.

A message's id is derived, never random: a transition's from its point, new state, time and
cause; a flood's from its site, edge and time. The engine re-evaluating a redelivered observation
batch produces the same transition again, with the same id, and JetStream (and the outbox, keyed
on the id) keeps the first copy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from google.protobuf.duration_pb2 import Duration

from services.alarms.adapters.wire import (
    CHATTERING,
    CLASS,
    CONDITION,
    FLAGS,
    FLEETING,
    PRIORITY,
    STATE,
    AlarmMessageError,
    instant,
    millis,
    rfc3339,
    set_timestamp,
    utc,
)
from services.alarms.channel import ALARM_CHANNEL, FLOOD_CHANNEL
from services.alarms.domain.model import (
    AlarmClass,
    AlarmState,
    ConditionType,
    PointId,
    Priority,
    Rationale,
    Rule,
    Text,
    Transition,
)
from services.common.bus.publisher import OutgoingMessage
from services.common.contracts import (
    ALARM_FLOOD_TYPE,
    ALARM_TRANSITION_TYPE,
    ALARM_TYPE,
    SCHEMA_VERSION,
    Alarm,
    AlarmFlood,
    AlarmTransition,
    Envelope,
    LocalizedText,
)
from services.common.contracts.cloudevents import ce_headers
from services.common.contracts.ids import derived_id

# Where the alarm engine's messages come from (CloudEvents `source`).
SOURCE = "/alarms"
# Characters a subject token cannot hold: the separator, the wildcards and whitespace.
_NOT_IN_TOKEN = frozenset(".*> \t\r\n")


# ---------------------------------------------------------------- the alarm as it is


@dataclass(frozen=True, slots=True)
class AlarmView:
    """An alarm point as consumers see it: its rule's handling and its state after a transition."""

    point: PointId
    condition: ConditionType
    priority: Priority
    alarm_class: AlarmClass
    rationale: Rationale
    state: AlarmState
    active: bool
    latched: bool = False
    shelved_until: datetime | None = None
    flags: frozenset[str] = frozenset()
    # The snapshot reference of the detection that last raised it; empty when none.
    snapshot: str = ""

    @classmethod
    def after(
        cls,
        transition: Transition,
        rule: Rule,
        *,
        latched: bool = False,
        shelved_until: datetime | None = None,
    ) -> AlarmView:
        """The alarm of `rule` as `transition` leaves it."""
        return cls(
            point=transition.point,
            condition=rule.condition,
            priority=rule.priority,
            alarm_class=rule.alarm_class,
            rationale=rule.rationale,
            state=transition.new,
            active=transition.active,
            latched=latched,
            shelved_until=shelved_until,
            flags=transition.flags,
        )


@dataclass(frozen=True, slots=True)
class FloodEdge:
    """A flood beginning (`began`) or ending at a site, with the counts that decided it. The
    fields after the site are those of the flood detector's event (domain/quality.py)."""

    tenant: str
    site: str
    began: bool
    at: datetime
    count: int  # activations in `window` ending at `at`
    since: datetime  # when the flood began (= `at` on a begin)
    activations: int  # from the flood's beginning to `at`, the beginning's own included
    window: timedelta = timedelta(minutes=10)
    begin_above: int = 10
    end_below: int = 5


# ---------------------------------------------------------------- ids and subjects


def transition_id(transition: Transition) -> str:
    """A ULID stamped with the transition's time whose rest is a digest of its point, new state,
    time and cause: equal for the same transition produced twice, different otherwise. Observation
    ids count as a set (the same observations in another order are the same cause)."""
    point, at = transition.point, utc(transition.at)
    action = transition.action
    cause = (
        "timer",
        transition.timer or "",
        "action",
        *((action.person, action.action, action.reason) if action is not None else ("", "", "")),
        "observations",
        *sorted(transition.observation_ids),
    )
    return derived_id(
        millis(at), "alarm.transition", point.tenant, point.site, point.device, point.rule,
        transition.new.value, instant(at), *cause,
    )  # fmt: skip


def flood_id(edge: FloodEdge) -> str:
    at = utc(edge.at)
    edge_name = "begin" if edge.began else "end"
    return derived_id(millis(at), "alarm.flood", edge.tenant, edge.site, edge_name, instant(at))


def transition_subject(point: PointId) -> str:
    # Device and rule apart: an empty one would still make the id a token ("--rule").
    for part in (point.device, point.rule):
        _token(part)
    return ALARM_CHANNEL.subject(_token(point.tenant), _token(point.site), point.alarm_id)


def flood_subject(tenant: str, site: str) -> str:
    return FLOOD_CHANNEL.subject(_token(tenant), _token(site))


def _token(value: str) -> str:
    # The tokens are slugs and device ids by validation upstream; a dot here would move the alarm
    # to another subject (or the wildcard's), so refuse it rather than publish it there.
    if not value or any(ch in _NOT_IN_TOKEN for ch in value):
        raise AlarmMessageError(f"{value!r} cannot be a subject token")
    return value


# ---------------------------------------------------------------- domain -> message


def transition_message(
    transition: Transition,
    alarm: AlarmView,
    *,
    source: str = SOURCE,
    correlation_id: str = "",
) -> OutgoingMessage:
    """The bus message of one transition, for `UnitOfWork.emit`: CloudEvents headers and
    Nats-Msg-Id = the transition's derived id.

    `correlation_id` is the chain's first message (e.g. the observation's); by default the
    transition starts its own chain. The causation is the last observation applied, if any.
    """
    if (alarm.point, alarm.state, alarm.active, alarm.flags) != (
        transition.point,
        transition.new,
        transition.active,
        transition.flags,
    ):
        # The message carries these once, in its alarm: a mismatch could not round-trip.
        raise AlarmMessageError(
            f"the alarm ({alarm.point.alarm_id} {alarm.state}) is not the one "
            f"{transition.point.alarm_id} -> {transition.new} leaves"
        )
    message = transition_to_proto(transition, alarm, source=source, correlation_id=correlation_id)
    env = message.envelope
    headers = ce_headers(id=env.id, type=ALARM_TRANSITION_TYPE, source=source, time=rfc3339(transition.at))
    return OutgoingMessage(transition_subject(transition.point), message.SerializeToString(), headers)


def transition_to_proto(
    transition: Transition, alarm: AlarmView, *, source: str = SOURCE, correlation_id: str = ""
) -> AlarmTransition:
    message_id = transition_id(transition)
    message = AlarmTransition()
    _envelope(
        message.envelope,
        message_id=message_id,
        type_=ALARM_TRANSITION_TYPE,
        source=source,
        at=transition.at,
        point=transition.point,
        correlation_id=correlation_id or message_id,
        causation_id=transition.observation_ids[-1] if transition.observation_ids else "",
    )
    message.alarm_id = transition.point.alarm_id
    message.old_state = STATE[transition.old]
    message.new_state = STATE[transition.new]
    cause = message.cause
    cause.observation_ids.extend(transition.observation_ids)
    if transition.action is not None:
        op = cause.operator_action
        op.person, op.action, op.reason = (
            transition.action.person,
            transition.action.action,
            transition.action.reason,
        )
    if transition.timer is not None:
        cause.timer = transition.timer
    _fill_alarm(message.alarm, alarm)
    message.alarm.envelope.CopyFrom(message.envelope)
    message.alarm.envelope.type = ALARM_TYPE
    return message


def alarm_to_proto(alarm: AlarmView, *, at: datetime, message_id: str, source: str = SOURCE) -> Alarm:
    """An alarm alone (e.g. a snapshot), as it is at `at`."""
    message = Alarm()
    _envelope(
        message.envelope,
        message_id=message_id,
        type_=ALARM_TYPE,
        source=source,
        at=at,
        point=alarm.point,
        correlation_id=message_id,
    )
    _fill_alarm(message, alarm)
    return message


def _fill_alarm(message: Alarm, alarm: AlarmView) -> None:
    unknown = alarm.flags - FLAGS
    if unknown:
        # A flag the contract has no field for would vanish on the bus: a bug to see, not to lose.
        raise AlarmMessageError(f"alarm flags {sorted(unknown)} have no field in the Alarm message")
    message.alarm_id = alarm.point.alarm_id
    message.device = alarm.point.device
    message.rule = alarm.point.rule
    message.condition = CONDITION[alarm.condition]
    message.priority = PRIORITY[alarm.priority]
    message.alarm_class = CLASS[alarm.alarm_class]
    message.state = STATE[alarm.state]
    message.active = alarm.active
    message.latched = alarm.latched
    if alarm.shelved_until is not None:
        set_timestamp(message.shelved_until, alarm.shelved_until)
    message.chattering = CHATTERING in alarm.flags
    message.fleeting = FLEETING in alarm.flags
    message.snapshot = alarm.snapshot
    rationale = message.rationale
    _text(rationale.cause, alarm.rationale.cause)
    _text(rationale.consequence, alarm.rationale.consequence)
    _text(rationale.operator_action, alarm.rationale.action)
    _duration(rationale.time_to_respond, alarm.rationale.time_to_respond)


def flood_message(edge: FloodEdge, *, source: str = SOURCE) -> OutgoingMessage:
    message = flood_to_proto(edge, source=source)
    headers = ce_headers(id=message.envelope.id, type=ALARM_FLOOD_TYPE, source=source, time=rfc3339(edge.at))
    return OutgoingMessage(flood_subject(edge.tenant, edge.site), message.SerializeToString(), headers)


def flood_to_proto(edge: FloodEdge, *, source: str = SOURCE) -> AlarmFlood:
    message_id = flood_id(edge)
    message = AlarmFlood()
    env = message.envelope
    env.id, env.type, env.source = message_id, ALARM_FLOOD_TYPE, source
    set_timestamp(env.time, edge.at)
    env.tenant, env.site, env.correlation_id = edge.tenant, edge.site, message_id
    env.schema_version = SCHEMA_VERSION
    message.began = edge.began
    message.count = edge.count
    _duration(message.window, edge.window)
    set_timestamp(message.since, edge.since)
    message.activations = edge.activations
    message.begin_above, message.end_below = edge.begin_above, edge.end_below
    return message


# ---------------------------------------------------------------- times and texts


def _envelope(
    env: Envelope,
    *,
    message_id: str,
    type_: str,
    source: str,
    at: datetime,
    point: PointId,
    correlation_id: str,
    causation_id: str = "",
) -> None:
    env.id, env.type, env.source = message_id, type_, source
    set_timestamp(env.time, at)
    env.tenant, env.site = point.tenant, point.site
    env.correlation_id, env.causation_id = correlation_id, causation_id
    env.schema_version = SCHEMA_VERSION


def _duration(target: Duration, span: timedelta) -> None:
    # Whole seconds and nanos of the same sign, as Duration requires (FromTimedelta does this).
    target.FromTimedelta(span)


def _text(target: LocalizedText, text: Text) -> None:
    target.ko, target.en = text.ko, text.en
