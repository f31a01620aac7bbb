"""Alarm transitions and floods on the bus: what the engine emits decodes to what it meant, under a
subject of the ALARMS channels, with an id that is the same exactly when the transition is."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.alarms.adapters.decode import (
    alarm_from_proto,
    flood_from_proto,
    read_flood,
    read_transition,
    transition_from_proto,
)
from services.alarms.adapters.messages import (
    AlarmView,
    FloodEdge,
    alarm_to_proto,
    flood_message,
    transition_id,
    transition_message,
    transition_to_proto,
)
from services.alarms.adapters.wire import AlarmMessageError, UndecodableAlarm
from services.alarms.channel import ALARM_CHANNEL, ALARMS, FLOOD_CHANNEL
from services.alarms.domain.model import (
    AlarmClass,
    AlarmState,
    ConditionType,
    OperatorAction,
    PointId,
    Priority,
    Rationale,
    Rule,
    Selector,
    Text,
    Transition,
)
from services.common.bus.consumer import Poison
from services.common.contracts import (
    ALARM_FLOOD_TYPE,
    ALARM_TRANSITION_TYPE,
    ALARM_TYPE,
    AlarmTransition,
)
from services.common.contracts import (
    AlarmClass as AlarmClassPb,
)
from services.common.contracts import (
    AlarmCondition as AlarmConditionPb,
)
from services.common.contracts import (
    AlarmPriority as AlarmPriorityPb,
)
from services.common.contracts import (
    AlarmState as AlarmStatePb,
)
from services.common.contracts.cloudevents import MSG_ID, ce_attributes

AT = datetime(2026, 11, 22, 0, 15, 3, 250_001, tzinfo=UTC)
POINT = PointId(tenant="ulsan-refining", site="ulsan-refinery", device="gd-fcc2-203", rule="h2s-high-high")
RATIONALE = Rationale(
    cause=Text(ko="황화수소 누출", en="H2S release"),
    consequence=Text(ko="작업자 중독", en="Worker poisoning"),
    action=Text(ko="구역 대피, 누출원 차단", en="Evacuate the zone, isolate the source"),
    time_to_respond=timedelta(minutes=2, microseconds=500),
)
RULE = Rule(
    id="h2s-high-high",
    selector=Selector(kind="gas.h2s"),
    condition=ConditionType.HIGH_HIGH,
    priority=Priority.EMERGENCY,
    alarm_class=AlarmClass.SAFETY,
    rationale=RATIONALE,
    setpoint=20.0,
)
RAISED = Transition(
    point=POINT,
    old=AlarmState.NORM,
    new=AlarmState.UNACK,
    at=AT,
    observation_ids=("01M809PBX0VKEPBGTYJ8AHME2Z", "01M809PBX0VKEPBGTYJ8AHME30"),
    active=True,
    flags=frozenset({"chattering"}),
)
SHELVED = Transition(
    point=POINT,
    old=AlarmState.UNACK,
    new=AlarmState.SHLVD,
    at=AT,
    action=OperatorAction(person="kim.operator", action="shelve", reason="sensor being recalibrated"),
    active=True,
)
EXPIRED = Transition(point=POINT, old=AlarmState.SHLVD, new=AlarmState.UNACK, at=AT, timer="shelve_expiry")
# An on-delay that fell due: the timer decided, the observations that started it are named too.
DELAYED = Transition(
    point=POINT,
    old=AlarmState.NORM,
    new=AlarmState.UNACK,
    at=AT,
    observation_ids=("01M809PBX0VKEPBGTYJ8AHME2Z",),
    timer="on_delay",
    active=True,
)
ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


@dataclass
class FakeMsg:
    subject: str
    data: bytes


def view(transition: Transition, **changes: object) -> AlarmView:
    return dataclasses.replace(AlarmView.after(transition, RULE), **changes)  # type: ignore[arg-type]


def decode(transition: Transition, alarm: AlarmView) -> tuple[Transition, AlarmView, AlarmTransition]:
    """What a consumer of alarm.> reads from the message the engine emits, and the protobuf."""
    out = transition_message(transition, alarm)
    back, back_alarm = read_transition(FakeMsg(out.subject, out.payload))  # type: ignore[arg-type]
    return back, back_alarm, ALARM_CHANNEL.decode(out.payload)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "transition",
    [RAISED, SHELVED, EXPIRED, DELAYED],
    ids=["observations", "operator", "timer", "timer-and-observations"],
)
def test_a_transition_decodes_to_what_the_engine_meant(transition: Transition) -> None:
    alarm = view(transition, latched=True, shelved_until=AT + timedelta(hours=2))

    back, back_alarm, _ = decode(transition, alarm)

    assert back == transition
    assert back_alarm == alarm


def test_the_message_carries_the_envelope_cause_and_rationale_consumers_read() -> None:
    _, _, message = decode(RAISED, view(RAISED))

    env = message.envelope
    assert (env.tenant, env.site, env.type, env.source) == (
        "ulsan-refining",
        "ulsan-refinery",
        ALARM_TRANSITION_TYPE,
        "/alarms",
    )
    assert ULID.match(env.id)
    assert env.correlation_id == env.id  # the transition starts its own chain by default
    assert env.causation_id == "01M809PBX0VKEPBGTYJ8AHME30"  # the last observation applied
    assert env.time.ToDatetime(tzinfo=UTC) == AT
    assert message.alarm_id == "gd-fcc2-203--h2s-high-high"
    assert message.old_state == AlarmStatePb.ALARM_STATE_NORM
    assert message.new_state == AlarmStatePb.ALARM_STATE_UNACK
    assert list(message.cause.observation_ids) == list(RAISED.observation_ids)
    assert not message.cause.HasField("operator_action") and not message.cause.timer
    alarm = message.alarm
    assert alarm.envelope.type == ALARM_TYPE and alarm.envelope.id == env.id
    assert alarm.condition == AlarmConditionPb.ALARM_CONDITION_HIGH_HIGH
    assert alarm.priority == AlarmPriorityPb.ALARM_PRIORITY_EMERGENCY
    assert alarm.alarm_class == AlarmClassPb.ALARM_CLASS_SAFETY
    assert (alarm.chattering, alarm.fleeting, alarm.active) == (True, False, True)
    assert not alarm.HasField("shelved_until")
    assert alarm.rationale.cause.ko == "황화수소 누출"
    assert alarm.rationale.operator_action.en == "Evacuate the zone, isolate the source"


def test_a_time_in_another_zone_is_the_same_instant_in_utc() -> None:
    seoul = AT.astimezone(timezone(timedelta(hours=9)))
    moved = dataclasses.replace(RAISED, at=seoul)

    back, _, _ = decode(moved, view(moved))

    assert back.at == AT and back.at.tzinfo == UTC
    assert transition_id(moved) == transition_id(RAISED)


def test_a_naive_time_is_refused_rather_than_guessed() -> None:
    naive = dataclasses.replace(RAISED, at=AT.replace(tzinfo=None))

    with pytest.raises(AlarmMessageError, match="no time zone"):
        transition_message(naive, view(RAISED))


def test_every_domain_value_has_its_proto_value_and_back() -> None:
    for domain, proto, prefix in (
        (AlarmState, AlarmStatePb, "ALARM_STATE_"),
        (Priority, AlarmPriorityPb, "ALARM_PRIORITY_"),
        (AlarmClass, AlarmClassPb, "ALARM_CLASS_"),
        (ConditionType, AlarmConditionPb, "ALARM_CONDITION_"),
    ):
        known = {name.removeprefix(prefix) for name, _ in proto.items() if not name.endswith("UNSPECIFIED")}
        assert known == {member.name for member in domain}, proto


@st.composite
def transitions(draw: st.DrawFn) -> tuple[Transition, AlarmView]:
    at = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=draw(st.integers(0, 10**15)))
    transition = dataclasses.replace(
        RAISED,
        old=draw(st.sampled_from(AlarmState)),
        new=draw(st.sampled_from(AlarmState)),
        at=at,
        active=draw(st.booleans()),
        flags=draw(st.frozensets(st.sampled_from(["chattering", "fleeting"]))),
    )
    rule = dataclasses.replace(
        RULE,
        condition=draw(st.sampled_from(ConditionType)),
        priority=draw(st.sampled_from(Priority)),
        alarm_class=draw(st.sampled_from(AlarmClass)),
    )
    return transition, AlarmView.after(transition, rule, latched=draw(st.booleans()))


@given(transitions())
def test_any_state_priority_class_and_condition_survives_the_bus(case: tuple[Transition, AlarmView]) -> None:
    transition, alarm = case

    back, back_alarm, _ = decode(transition, alarm)

    assert (back, back_alarm) == (transition, alarm)


def test_a_flag_the_contract_cannot_carry_is_refused_not_dropped() -> None:
    odd = dataclasses.replace(RAISED, flags=frozenset({"stale"}))

    with pytest.raises(AlarmMessageError, match="stale"):
        transition_message(odd, view(odd))


@pytest.mark.parametrize(
    "alarm",
    [view(SHELVED), view(RAISED, active=False), view(RAISED, flags=frozenset())],
    ids=["state", "active", "flags"],
)
def test_an_alarm_that_is_not_the_transitions_result_is_refused(alarm: AlarmView) -> None:
    # The message carries state, active and flags once, in its alarm: a mismatch would be lost.
    with pytest.raises(AlarmMessageError, match="not the one"):
        transition_message(RAISED, alarm)


def test_an_alarm_alone_round_trips() -> None:
    alarm = view(SHELVED, shelved_until=AT + timedelta(hours=8), latched=True)

    message = alarm_to_proto(alarm, at=AT, message_id="01M809PBX0VKEPBGTYJ8AHME2Z")

    assert message.envelope.type == ALARM_TYPE
    assert alarm_from_proto(message, tenant=message.envelope.tenant, site=message.envelope.site) == alarm


def test_an_unknown_enum_value_from_a_newer_producer_is_an_error_not_a_guess() -> None:
    message = transition_to_proto(RAISED, view(RAISED))
    message.new_state = 42  # type: ignore[assignment]

    with pytest.raises(UndecodableAlarm, match="new_state 42") as raised:
        transition_from_proto(message)
    assert isinstance(raised.value, Poison)  # a consumer dead-letters it


def test_a_transition_without_its_alarm_does_not_decode() -> None:
    message = transition_to_proto(RAISED, view(RAISED))
    message.ClearField("alarm")

    with pytest.raises(UndecodableAlarm, match="no rationale"):
        transition_from_proto(message)


# ---------------------------------------------------------------- ids


def test_the_same_transition_produced_again_has_the_same_id_and_headers() -> None:
    first = transition_message(RAISED, view(RAISED))
    # A redelivered batch re-evaluated later: a new object, observation ids in another order.
    again = dataclasses.replace(RAISED, observation_ids=tuple(reversed(RAISED.observation_ids)))
    second = transition_message(again, view(again))

    assert first.headers[MSG_ID] == second.headers[MSG_ID]
    assert first.headers == second.headers


@pytest.mark.parametrize(
    "change",
    [
        {"point": dataclasses.replace(POINT, tenant="busan-chemical")},
        {"point": dataclasses.replace(POINT, site="onsan-refinery")},
        {"point": dataclasses.replace(POINT, device="gd-fcc2-204")},
        {"point": dataclasses.replace(POINT, rule="h2s-high")},
        {"new": AlarmState.ACKED},
        {"at": AT + timedelta(microseconds=1)},
        {"observation_ids": ("01M809PBX0VKEPBGTYJ8AHME31",)},
        {"observation_ids": (), "timer": "on_delay"},
        {"timer": "on_delay"},
        {"observation_ids": (), "action": OperatorAction(person="kim.operator", action="ack")},
    ],
    ids=[
        "tenant",
        "site",
        "device",
        "rule",
        "new-state",
        "time",
        "observations",
        "timer",
        "timer-besides-observations",
        "action",
    ],
)
def test_a_transition_differing_in_point_state_time_or_cause_has_another_id(
    change: dict[str, object],
) -> None:
    other = dataclasses.replace(RAISED, **change)  # type: ignore[arg-type]

    assert transition_id(other) != transition_id(RAISED)


def test_operator_actions_differ_by_person_action_and_reason() -> None:
    ids = {
        transition_id(dataclasses.replace(SHELVED, action=action))
        for action in (
            OperatorAction(person="kim.operator", action="shelve", reason="recalibration"),
            OperatorAction(person="lee.operator", action="shelve", reason="recalibration"),
            OperatorAction(person="kim.operator", action="suppress", reason="recalibration"),
            OperatorAction(person="kim.operator", action="shelve", reason="nuisance"),
        )
    }
    assert len(ids) == 4


def test_the_id_is_a_ulid_stamped_with_the_transition_time() -> None:
    from ulid import ULID as Ulid

    value = transition_id(RAISED)

    assert ULID.match(value)
    assert Ulid.from_str(value).datetime == AT.replace(microsecond=250_000)


# ---------------------------------------------------------------- subjects


def test_a_transition_goes_to_its_alarms_subject_on_the_alarms_stream() -> None:
    out = transition_message(RAISED, view(RAISED))

    assert out.subject == "alarm.ulsan-refining.ulsan-refinery.gd-fcc2-203--h2s-high-high"
    assert out.subject.startswith(ALARM_CHANNEL.filter_subject[:-1])
    assert ALARM_CHANNEL.filter_subject in ALARMS.subjects
    assert ce_attributes(out.headers) == {
        "specversion": "1.0",
        "id": out.headers[MSG_ID],
        "type": ALARM_TRANSITION_TYPE,
        "source": "/alarms",
        "time": "2026-11-22T00:15:03.250001Z",
    }


@pytest.mark.parametrize("field", ["tenant", "site", "device", "rule"])
@pytest.mark.parametrize("bad", ["a.b", "a*", ">", "a b", ""])
def test_a_token_that_would_change_the_subject_is_refused(field: str, bad: str) -> None:
    point = dataclasses.replace(POINT, **{field: bad})
    transition = dataclasses.replace(RAISED, point=point)

    with pytest.raises(AlarmMessageError, match="cannot be a subject token"):
        transition_message(transition, view(transition))


def test_flood_subjects_are_their_own_family_and_never_decode_as_transitions() -> None:
    edge = FloodEdge(
        tenant="ulsan-refining",
        site="ulsan-refinery",
        began=True,
        at=AT,
        count=11,
        since=AT,
        activations=11,
        window=timedelta(minutes=10),
    )
    out = flood_message(edge)

    assert out.subject == "alarmflood.ulsan-refining.ulsan-refinery"
    assert FLOOD_CHANNEL.filter_subject in ALARMS.subjects
    # A consumer of transitions (alarm.>) never receives a flood message, and the reverse.
    assert not out.subject.startswith("alarm.")
    assert ce_attributes(out.headers)["type"] == ALARM_FLOOD_TYPE
    assert flood_from_proto(FLOOD_CHANNEL.decode(out.payload)) == edge


def test_a_floods_begin_and_end_have_distinct_stable_ids() -> None:
    begin = FloodEdge("t", "s", began=True, at=AT, count=11, since=AT, activations=11)
    later = AT + timedelta(minutes=30)
    end = dataclasses.replace(begin, began=False, at=later, count=4, activations=37)

    assert flood_message(begin).headers[MSG_ID] == flood_message(begin).headers[MSG_ID]
    assert flood_message(begin).headers[MSG_ID] != flood_message(end).headers[MSG_ID]
    assert flood_from_proto(FLOOD_CHANNEL.decode(flood_message(end).payload)) == end


def test_garbage_on_an_alarm_subject_is_poison() -> None:
    with pytest.raises(Poison, match="not an AlarmTransition protobuf"):
        read_transition(FakeMsg("alarm.t.s.a--b", b"\xff\xfe"))  # type: ignore[arg-type]


def test_a_message_on_a_subject_that_is_not_its_own_is_poison() -> None:
    out = transition_message(RAISED, view(RAISED))
    other_alarm = out.subject.replace("gd-fcc2-203", "gd-fcc2-204")
    with pytest.raises(Poison, match="does not match"):
        read_transition(FakeMsg(other_alarm, out.payload))  # type: ignore[arg-type]

    edge = FloodEdge(
        "ulsan-refining", "ulsan-refinery", began=True, at=AT, count=11, since=AT, activations=11
    )
    flood = flood_message(edge)
    assert read_flood(FakeMsg(flood.subject, flood.payload)) == edge  # type: ignore[arg-type]
    with pytest.raises(Poison, match="does not match"):
        read_flood(FakeMsg("alarmflood.ulsan-refining.onsan-refinery", flood.payload))  # type: ignore[arg-type]
