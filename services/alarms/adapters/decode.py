"""Alarm messages read back into the domain vocabulary: what a consumer of ALARMS works with.

`read_transition` and `read_flood` are decoders for a `DurableConsumer` on the ALARMS channels:
what does not decode, or arrived on a subject that is not its own, is `Poison` (dead-lettered).
"""

from __future__ import annotations

from nats.aio.msg import Msg

from services.alarms.adapters.messages import AlarmView, FloodEdge
from services.alarms.adapters.wire import (
    CHATTERING,
    CLASS_BACK,
    CONDITION_BACK,
    FLEETING,
    PRIORITY_BACK,
    STATE_BACK,
    UndecodableAlarm,
    back,
    from_timestamp,
)
from services.alarms.channel import ALARM_CHANNEL, FLOOD_CHANNEL
from services.alarms.domain.model import OperatorAction, PointId, Rationale, Text, Transition
from services.common.bus.channel import ChannelSubscriber
from services.common.contracts import Alarm, AlarmFlood, AlarmTransition

TRANSITIONS_IN = ChannelSubscriber(ALARM_CHANNEL)
FLOODS_IN = ChannelSubscriber(FLOOD_CHANNEL)


def read_transition(msg: Msg) -> tuple[Transition, AlarmView]:
    """A transition message as it came off `alarm.>`: decoded, its subject checked, mapped."""
    message = TRANSITIONS_IN.decode(msg)
    TRANSITIONS_IN.check_subject(msg, message.envelope.tenant, message.envelope.site, message.alarm_id)
    return transition_from_proto(message)


def read_flood(msg: Msg) -> FloodEdge:
    """A flood message as it came off `alarmflood.>`: decoded, its subject checked, mapped."""
    message = FLOODS_IN.decode(msg)
    FLOODS_IN.check_subject(msg, message.envelope.tenant, message.envelope.site)
    return flood_from_proto(message)


def transition_from_proto(message: AlarmTransition) -> tuple[Transition, AlarmView]:
    """The transition and the alarm it left, as the producer had them."""
    alarm = alarm_from_proto(message.alarm, tenant=message.envelope.tenant, site=message.envelope.site)
    if message.alarm_id != alarm.point.alarm_id:
        raise UndecodableAlarm(f"alarm_id {message.alarm_id} is not its alarm's ({alarm.point.alarm_id})")
    cause = message.cause
    action = None
    if cause.HasField("operator_action"):
        op = cause.operator_action
        action = OperatorAction(person=op.person, action=op.action, reason=op.reason)
    transition = Transition(
        point=alarm.point,
        old=back(STATE_BACK, message.old_state, "old_state"),
        new=back(STATE_BACK, message.new_state, "new_state"),
        at=from_timestamp(message.envelope.time),
        observation_ids=tuple(cause.observation_ids),
        action=action,
        timer=cause.timer or None,
        active=alarm.active,
        flags=alarm.flags,
    )
    return transition, alarm


def alarm_from_proto(message: Alarm, *, tenant: str, site: str) -> AlarmView:
    if not message.HasField("rationale"):
        raise UndecodableAlarm(f"alarm {message.alarm_id} has no rationale")
    rationale = message.rationale
    return AlarmView(
        point=PointId(tenant=tenant, site=site, device=message.device, rule=message.rule),
        condition=back(CONDITION_BACK, message.condition, "condition"),
        priority=back(PRIORITY_BACK, message.priority, "priority"),
        alarm_class=back(CLASS_BACK, message.alarm_class, "alarm_class"),
        rationale=Rationale(
            cause=Text(ko=rationale.cause.ko, en=rationale.cause.en),
            consequence=Text(ko=rationale.consequence.ko, en=rationale.consequence.en),
            action=Text(ko=rationale.operator_action.ko, en=rationale.operator_action.en),
            time_to_respond=rationale.time_to_respond.ToTimedelta(),
        ),
        state=back(STATE_BACK, message.state, "state"),
        active=message.active,
        latched=message.latched,
        shelved_until=from_timestamp(message.shelved_until) if message.HasField("shelved_until") else None,
        flags=frozenset(
            flag for flag, on in ((CHATTERING, message.chattering), (FLEETING, message.fleeting)) if on
        ),
        snapshot=message.snapshot,
    )


def flood_from_proto(message: AlarmFlood) -> FloodEdge:
    return FloodEdge(
        tenant=message.envelope.tenant,
        site=message.envelope.site,
        began=message.began,
        at=from_timestamp(message.envelope.time),
        count=message.count,
        since=from_timestamp(message.since),
        activations=message.activations,
        window=message.window.ToTimedelta(),
        begin_above=message.begin_above,
        end_below=message.end_below,
    )
