"""Alarm transitions and floods as bus messages, and back: the one mapping between the domain
vocabulary (domain/model.py) and the protobuf contracts (proto/safetyhub/v1/alarm.proto).

A message's id is derived, never random: a transition's from its point, new state, time and
cause; a flood's from its site, edge and time. The engine re-evaluating a redelivered observation
batch produces the same transition again, with the same id, and JetStream (and the outbox, keyed
on the id) keeps the first copy only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from services.alarms.channel import ALARM_CHANNEL, FLOOD_CHANNEL
from services.alarms.domain.model import (
    AlarmClass,
    AlarmState,
    ConditionType,
    OperatorAction,
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
from services.common.contracts import AlarmClass as AlarmClassPb
from services.common.contracts import AlarmCondition as AlarmConditionPb
from services.common.contracts import AlarmPriority as AlarmPriorityPb
from services.common.contracts import AlarmState as AlarmStatePb
from services.common.contracts.cloudevents import ce_headers
from services.common.contracts.ids import derived_id
from services.common.errors import SafetyhubError

# Where the alarm engine's messages come from (CloudEvents `source`).
SOURCE = "/alarms"
# The quality flags an alarm can carry (ISA-18.2 alarm performance), each a field of `Alarm`.
CHATTERING = "chattering"
FLEETING = "fleeting"
FLAGS = frozenset({CHATTERING, FLEETING})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Characters a subject token cannot hold: the separator, the wildcards and whitespace.
_NOT_IN_TOKEN = frozenset(".*> \t\r\n")


class AlarmMessageError(SafetyhubError):
    """An alarm message that does not map to the domain: an unknown enum value, a missing field."""


# ---------------------------------------------------------------- enums, by name

E = TypeVar("E", bound=enum.Enum)
V = TypeVar("V", bound=int)


def _by_name(domain: type[E], prefix: str, numbers: dict[str, V]) -> tuple[dict[E, V], dict[int, E]]:
    """Domain member NAME <-> proto value PREFIX_NAME: one table per enum, derived, both ways.
    A member without its proto value fails here, at the first import, not on the first alarm."""
    to_pb = {member: numbers[prefix + member.name] for member in domain}
    return to_pb, {number: member for member, number in to_pb.items()}


_STATE, _STATE_BACK = _by_name(AlarmState, "ALARM_STATE_", dict(AlarmStatePb.items()))
_PRIORITY, _PRIORITY_BACK = _by_name(Priority, "ALARM_PRIORITY_", dict(AlarmPriorityPb.items()))
_CLASS, _CLASS_BACK = _by_name(AlarmClass, "ALARM_CLASS_", dict(AlarmClassPb.items()))
_CONDITION, _CONDITION_BACK = _by_name(ConditionType, "ALARM_CONDITION_", dict(AlarmConditionPb.items()))


def _back(table: dict[int, E], number: int, what: str) -> E:
    try:
        return table[number]
    except KeyError:
        raise AlarmMessageError(f"{what} {number} is not one this build knows") from None


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
    """A flood beginning (`flooding`) or ending at a site, with the counts that decided it."""

    tenant: str
    site: str
    flooding: bool
    at: datetime
    activations: int
    window: timedelta
    since: datetime  # when the flood began (= `at` on a begin)
    begin_above: int = 10
    end_below: int = 5


# ---------------------------------------------------------------- ids and subjects


def transition_id(transition: Transition) -> str:
    """A ULID stamped with the transition's time whose rest is a digest of its point, new state,
    time and cause: equal for the same transition produced twice, different otherwise. Observation
    ids count as a set (the same observations in another order are the same cause)."""
    point, at = transition.point, _utc(transition.at)
    cause: tuple[str, ...]
    if transition.action is not None:
        action = transition.action
        cause = ("action", action.person, action.action, action.reason)
    elif transition.timer is not None:
        cause = ("timer", transition.timer)
    else:
        cause = ("observations", *sorted(transition.observation_ids))
    return derived_id(
        _millis(at), "alarm.transition", point.tenant, point.site, point.device, point.rule,
        transition.new.value, _instant(at), *cause,
    )  # fmt: skip


def flood_id(edge: FloodEdge) -> str:
    at = _utc(edge.at)
    edge_name = "begin" if edge.flooding else "end"
    return derived_id(_millis(at), "alarm.flood", edge.tenant, edge.site, edge_name, _instant(at))


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
    if alarm.point != transition.point or alarm.state != transition.new:
        raise AlarmMessageError(
            f"the alarm ({alarm.point.alarm_id} {alarm.state}) is not the one "
            f"{transition.point.alarm_id} -> {transition.new} leaves"
        )
    message = transition_to_proto(transition, alarm, source=source, correlation_id=correlation_id)
    env = message.envelope
    headers = ce_headers(id=env.id, type=ALARM_TRANSITION_TYPE, source=source, time=_rfc3339(transition.at))
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
    message.old_state = _STATE[transition.old]
    message.new_state = _STATE[transition.new]
    if transition.action is not None:
        cause = message.operator_action
        cause.person, cause.action, cause.reason = (
            transition.action.person,
            transition.action.action,
            transition.action.reason,
        )
    elif transition.timer is not None:
        message.timer.timer = transition.timer
    elif transition.observation_ids:
        message.observations.observation_ids.extend(transition.observation_ids)
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
    message.condition = _CONDITION[alarm.condition]
    message.priority = _PRIORITY[alarm.priority]
    message.alarm_class = _CLASS[alarm.alarm_class]
    message.state = _STATE[alarm.state]
    message.active = alarm.active
    message.latched = alarm.latched
    if alarm.shelved_until is not None:
        _timestamp(message.shelved_until, alarm.shelved_until)
    message.chattering = CHATTERING in alarm.flags
    message.fleeting = FLEETING in alarm.flags
    rationale = message.rationale
    _text(rationale.cause, alarm.rationale.cause)
    _text(rationale.consequence, alarm.rationale.consequence)
    _text(rationale.operator_action, alarm.rationale.action)
    _duration(rationale.time_to_respond, alarm.rationale.time_to_respond)


def flood_message(edge: FloodEdge, *, source: str = SOURCE) -> OutgoingMessage:
    message = flood_to_proto(edge, source=source)
    headers = ce_headers(id=message.envelope.id, type=ALARM_FLOOD_TYPE, source=source, time=_rfc3339(edge.at))
    return OutgoingMessage(flood_subject(edge.tenant, edge.site), message.SerializeToString(), headers)


def flood_to_proto(edge: FloodEdge, *, source: str = SOURCE) -> AlarmFlood:
    message_id = flood_id(edge)
    message = AlarmFlood()
    env = message.envelope
    env.id, env.type, env.source = message_id, ALARM_FLOOD_TYPE, source
    _timestamp(env.time, edge.at)
    env.tenant, env.site, env.correlation_id = edge.tenant, edge.site, message_id
    env.schema_version = SCHEMA_VERSION
    message.flooding = edge.flooding
    message.activations = edge.activations
    _duration(message.window, edge.window)
    _timestamp(message.since, edge.since)
    message.begin_above, message.end_below = edge.begin_above, edge.end_below
    return message


# ---------------------------------------------------------------- message -> domain


def transition_from_proto(message: AlarmTransition) -> tuple[Transition, AlarmView]:
    """The transition and the alarm it left, as the producer had them."""
    alarm = alarm_from_proto(message.alarm, tenant=message.envelope.tenant, site=message.envelope.site)
    if message.alarm_id != alarm.point.alarm_id:
        raise AlarmMessageError(f"alarm_id {message.alarm_id} is not its alarm's ({alarm.point.alarm_id})")
    cause = message.WhichOneof("cause")
    action = None
    if cause == "operator_action":
        op = message.operator_action
        action = OperatorAction(person=op.person, action=op.action, reason=op.reason)
    transition = Transition(
        point=alarm.point,
        old=_back(_STATE_BACK, message.old_state, "old_state"),
        new=_back(_STATE_BACK, message.new_state, "new_state"),
        at=_datetime(message.envelope.time),
        observation_ids=tuple(message.observations.observation_ids) if cause == "observations" else (),
        action=action,
        timer=message.timer.timer if cause == "timer" else None,
        active=alarm.active,
        flags=alarm.flags,
    )
    return transition, alarm


def alarm_from_proto(message: Alarm, *, tenant: str, site: str) -> AlarmView:
    if not message.HasField("rationale"):
        raise AlarmMessageError(f"alarm {message.alarm_id} has no rationale")
    rationale = message.rationale
    return AlarmView(
        point=PointId(tenant=tenant, site=site, device=message.device, rule=message.rule),
        condition=_back(_CONDITION_BACK, message.condition, "condition"),
        priority=_back(_PRIORITY_BACK, message.priority, "priority"),
        alarm_class=_back(_CLASS_BACK, message.alarm_class, "alarm_class"),
        rationale=Rationale(
            cause=Text(ko=rationale.cause.ko, en=rationale.cause.en),
            consequence=Text(ko=rationale.consequence.ko, en=rationale.consequence.en),
            action=Text(ko=rationale.operator_action.ko, en=rationale.operator_action.en),
            time_to_respond=rationale.time_to_respond.ToTimedelta(),
        ),
        state=_back(_STATE_BACK, message.state, "state"),
        active=message.active,
        latched=message.latched,
        shelved_until=_datetime(message.shelved_until) if message.HasField("shelved_until") else None,
        flags=frozenset(
            flag for flag, on in ((CHATTERING, message.chattering), (FLEETING, message.fleeting)) if on
        ),
    )


def flood_from_proto(message: AlarmFlood) -> FloodEdge:
    return FloodEdge(
        tenant=message.envelope.tenant,
        site=message.envelope.site,
        flooding=message.flooding,
        at=_datetime(message.envelope.time),
        activations=message.activations,
        window=message.window.ToTimedelta(),
        since=_datetime(message.since),
        begin_above=message.begin_above,
        end_below=message.end_below,
    )


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
    _timestamp(env.time, at)
    env.tenant, env.site = point.tenant, point.site
    env.correlation_id, env.causation_id = correlation_id, causation_id
    env.schema_version = SCHEMA_VERSION


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        # A naive time has no instant: refusing it beats guessing the server's zone.
        raise AlarmMessageError(f"{moment.isoformat()} has no time zone")
    return moment.astimezone(UTC)


def _split(moment: datetime) -> tuple[int, int]:
    # Exact integer arithmetic: a float timestamp would lose microseconds and change the id.
    delta = _utc(moment) - _EPOCH
    return delta.days * 86_400 + delta.seconds, delta.microseconds * 1000


def _millis(moment: datetime) -> int:
    seconds, nanos = _split(moment)
    return seconds * 1000 + nanos // 1_000_000


def _instant(moment: datetime) -> str:
    seconds, nanos = _split(moment)
    return f"{seconds}.{nanos:09d}"


def _rfc3339(moment: datetime) -> str:
    return _utc(moment).isoformat().replace("+00:00", "Z")


def _timestamp(target: Timestamp, moment: datetime) -> None:
    target.seconds, target.nanos = _split(moment)


def _datetime(stamp: Timestamp) -> datetime:
    return _EPOCH + timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)


def _duration(target: Duration, span: timedelta) -> None:
    # Whole seconds and nanos of the same sign, as Duration requires (FromTimedelta does this).
    target.FromTimedelta(span)


def _text(target: LocalizedText, text: Text) -> None:
    target.ko, target.en = text.ko, text.en
