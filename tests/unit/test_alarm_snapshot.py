"""A camera's alarm carries the picture of the detection that raised it: on the point's state,
through acknowledgement and return, replaced by the next activation's, and on the bus."""

from __future__ import annotations

from datetime import timedelta

from services.alarms.adapters.decode import transition_from_proto
from services.alarms.adapters.messages import transition_to_proto
from services.alarms.domain.actions import Ack
from services.alarms.domain.engine import Engine
from services.alarms.domain.model import AlarmClass, AlarmState, ConditionType, Priority, Rule, Selector
from services.alarms.domain.rules import DeviceRef, RuleIndex, RuleSet
from services.alarms.domain.workset import Observation, Workset, decode_record, encode_record
from tests.unit.alarm_engine_builders import SITE, TENANT, WHY, at, point

CAMERA = "cam-fcc-1"
FALL = Rule(
    id="fall",
    selector=Selector(kind="video.fall"),
    condition=ConditionType.DETECTION,
    priority=Priority.EMERGENCY,
    alarm_class=AlarmClass.SAFETY,
    rationale=WHY,
    min_confidence=0.5,
    persistence_count=2,
    persistence_window=timedelta(seconds=5),
)
FIRST, SECOND, LATER = (f"/v1/snapshots/01KB{n:022d}" for n in (1, 2, 3))


def lookup(tenant: str, site: str, device: str) -> tuple[DeviceRef, tuple[str, ...]] | None:
    if (tenant, site, device) == (TENANT, SITE, CAMERA):
        return DeviceRef(site, "fcc", "camera", device), ("video.fall",)
    return None


def detection(obs_id: str, seconds: float, snapshot: str = "", confidence: float = 0.9) -> Observation:
    return Observation(
        TENANT, SITE, CAMERA, "video.fall", obs_id, at(seconds), None, confidence, snapshot=snapshot
    )


def test_the_alarm_shows_the_snapshot_of_the_detection_that_raised_it_until_the_next_raise() -> None:
    eng, work = Engine(RuleSet(RuleIndex((FALL,)), ()), lookup), Workset()
    fall = point(CAMERA, "fall")

    eng.observe(work, [detection("o1", 0, FIRST), detection("o2", 1, SECOND)])
    raised = work.emitted[-1]
    assert raised.transition.new is AlarmState.UNACK
    # The second detection made it persistent: its picture is the alarm's.
    assert raised.alarm.snapshot == SECOND

    eng.act(work, fall, Ack(at(2), "kim"))
    assert work.emitted[-1].alarm.snapshot == SECOND  # an ack keeps the picture

    eng.tick(work, at(30))  # no detection for the window: it returns
    assert work.points[fall].state.state is AlarmState.NORM
    assert work.emitted[-1].alarm.snapshot == SECOND

    eng.observe(work, [detection("o3", 40, LATER), detection("o4", 41)])
    again = work.emitted[-1]
    assert again.transition.new is AlarmState.UNACK
    # Raised by a detection without a picture: it shows none, not the last raise's.
    assert again.alarm.snapshot == ""
    assert decode_record(encode_record(work.points[fall])).state.snapshot == ""


def test_the_snapshot_survives_the_record_and_the_bus_and_an_old_message_reads_as_none() -> None:
    eng, work = Engine(RuleSet(RuleIndex((FALL,)), ()), lookup), Workset()
    eng.observe(work, [detection("o1", 0, FIRST), detection("o2", 1, SECOND)])
    emitted = work.emitted[-1]

    assert decode_record(encode_record(work.points[point(CAMERA, "fall")])).state.snapshot == SECOND
    message = transition_to_proto(emitted.transition, emitted.alarm)
    assert message.alarm.snapshot == SECOND
    _, alarm = transition_from_proto(type(message).FromString(message.SerializeToString()))
    assert alarm.snapshot == SECOND

    message.alarm.ClearField("snapshot")  # as a producer before the field wrote it
    _, old = transition_from_proto(type(message).FromString(message.SerializeToString()))
    assert old.snapshot == ""
