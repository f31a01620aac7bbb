"""Fusion of alarms into incidents: realistic plant scenarios, time as a parameter."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

from services.alarms.domain.model import AlarmClass, ConditionType, Priority
from services.incidents.domain.fusion import ChangeKind, FloodSignal, Fusion, SiteState, distance_m
from services.incidents.domain.model import Certainty, IncidentType, Severity, Signal, Status, Text
from services.incidents.domain.rules import DEFAULT_RULES, FusionRule

T0 = datetime(2026, 6, 3, 14, 0, tzinfo=UTC)
_ids = itertools.count()

# FCC-2 and CDU-1 are neighbouring units: their closest detectors are ~90 m apart.
FCC2 = (35.4721, 129.3601)
CDU1 = (35.4713, 129.3597)
TANK = (35.4690, 129.3650)


def alarm(
    device: str,
    kind: str,
    *,
    at_s: float,
    zone: str,
    position: tuple[float, float],
    priority: Priority = Priority.HIGH,
    alarm_class: AlarmClass = AlarmClass.SAFETY,
    condition: ConditionType = ConditionType.HIGH,
    active: bool = True,
    confirmed: bool = False,
    rule: str = "r",
) -> Signal:
    return Signal(
        id=f"tr-{next(_ids):05d}",
        tenant="ulsan-refining",
        site="ulsan-refinery",
        alarm_id=f"{device}--{rule}",
        device=device,
        rule=rule,
        kind=kind,
        zone=zone,
        position=position,
        alarm_class=alarm_class,
        priority=priority,
        condition=condition,
        active=active,
        at=T0 + timedelta(seconds=at_s),
        confirmed=confirmed,
        action=Text(ko="조치", en=f"act on {device}"),
    )


def shape(state: SiteState) -> set[tuple[str, str, frozenset[str], str, str]]:
    """What a person sees of the incidents: type, status, alarms, severity, certainty."""
    return {
        (i.type, i.status, frozenset(m.alarm_id for m in i.members), i.severity, i.certainty)
        for i in state.incidents
        if i.status is not Status.CLOSED
    }


def gas_leak_spreading() -> list[Signal]:
    near_cdu = (FCC2[0] - 0.0004, FCC2[1] - 0.0002)
    return [
        alarm("gd-fcc2-203", "gas.h2s", at_s=0, zone="fcc-2", position=FCC2),
        alarm("gd-fcc2-204", "gas.h2s", at_s=40, zone="fcc-2", position=(FCC2[0] + 0.0002, FCC2[1])),
        alarm("gd-fcc2-201", "gas.lel", at_s=75, zone="fcc-2", position=near_cdu),
        # The cloud drifts into CDU-1: a different zone, but within the rule's 150 m.
        alarm("gd-cdu1-101", "gas.h2s", at_s=180, zone="cdu-1", position=CDU1, priority=Priority.EMERGENCY),
    ]


def test_a_gas_leak_spreading_across_two_zones_is_one_incident() -> None:
    fusion, state = Fusion(DEFAULT_RULES), SiteState()
    assert distance_m(FCC2, CDU1) < 150
    changes = fusion.apply(state, gas_leak_spreading())

    [incident] = state.incidents
    assert incident.type is IncidentType.GAS_RELEASE
    assert incident.zones == ["fcc-2", "cdu-1"]
    assert len(incident.members) == 4
    assert incident.severity is Severity.EXTREME  # the emergency H2S alarm in CDU-1
    assert incident.certainty is Certainty.LIKELY  # sensors only, no second principle yet
    assert [c.kind for c in changes][:2] == [ChangeKind.OPENED, ChangeKind.JOINED]
    assert sum(c.kind is ChangeKind.JOINED for c in changes) == 3
    # Every alarm's operator action is carried, after the rule's own.
    assert incident.actions[0].en.startswith("Check the wind")
    assert {a.en for a in incident.actions[1:]} == {f"act on {s.device}" for s in gas_leak_spreading()}


def test_a_gas_alarm_far_away_and_later_opens_its_own_incident() -> None:
    fusion, state = Fusion(DEFAULT_RULES), SiteState()
    fusion.apply(state, gas_leak_spreading())
    fusion.apply(state, [alarm("gd-tf-501", "gas.lel", at_s=60, zone="tank-farm", position=TANK)])
    fusion.apply(state, [alarm("gd-fcc2-202", "gas.lel", at_s=3600, zone="fcc-2", position=FCC2)])
    assert [len(i.members) for i in state.incidents] == [4, 1, 1]


def test_a_camera_seeing_vapour_confirms_the_gas_release() -> None:
    fusion, state = Fusion(DEFAULT_RULES), SiteState()
    fusion.apply(state, [alarm("gd-fcc2-203", "gas.h2s", at_s=0, zone="fcc-2", position=FCC2)])
    [incident] = state.incidents
    assert (incident.severity, incident.certainty) == (Severity.SEVERE, Certainty.LIKELY)

    changes = fusion.apply(
        state,
        [
            alarm(
                "cam-fcc2-201",
                "video.smoke",
                at_s=30,
                zone="fcc-2",
                position=FCC2,
                condition=ConditionType.DETECTION,
            )
        ],
    )
    assert len(state.incidents) == 1  # the camera joined the release, it did not open a fire
    assert (incident.severity, incident.certainty) == (Severity.EXTREME, Certainty.OBSERVED)
    assert [c.kind for c in changes] == [ChangeKind.JOINED, ChangeKind.RAISED]
    assert "confirmed" in changes[1].what


def test_a_fire_confirmed_by_flame_heat_and_camera() -> None:
    fusion, state = Fusion(DEFAULT_RULES), SiteState()
    fusion.apply(
        state,
        [
            alarm(
                "cam-tf-501",
                "video.fire",
                at_s=0,
                zone="tank-farm",
                position=TANK,
                condition=ConditionType.DETECTION,
            )
        ],
    )
    [fire] = state.incidents
    assert fire.type is IncidentType.FIRE
    assert fire.certainty is Certainty.POSSIBLE  # a camera alone may see glare
    fusion.apply(state, [alarm("fd-tf-501", "flame", at_s=8, zone="tank-farm", position=TANK)])
    assert (fire.certainty, fire.severity) == (Certainty.LIKELY, Severity.SEVERE)
    fusion.apply(state, [alarm("hd-tf-501", "temperature", at_s=20, zone="tank-farm", position=TANK)])
    assert (fire.certainty, fire.severity) == (Certainty.OBSERVED, Severity.EXTREME)
    assert len(state.incidents) == 1 and len(fire.members) == 3


def test_a_confirmed_voting_group_alarm_is_observed() -> None:
    fusion, state = Fusion(DEFAULT_RULES), SiteState()
    vote = alarm("fcc2-lel-2oo3", "gas.lel", at_s=0, zone="fcc-2", position=FCC2, confirmed=True, rule="vote")
    fusion.apply(state, [vote])
    [incident] = state.incidents
    assert incident.certainty is Certainty.OBSERVED
    assert incident.severity is Severity.EXTREME


def test_a_person_down_seen_by_the_video_service_opens_a_possible_person_down() -> None:
    fusion, state = Fusion(DEFAULT_RULES), SiteState()
    down = alarm(
        "cam-fcc2-201", "video.person_down", at_s=0, zone="fcc-2", position=FCC2,
        condition=ConditionType.DETECTION, rule="camera-person-down",
    )  # fmt: skip
    fusion.apply(state, [down])
    [incident] = state.incidents
    assert incident.type is IncidentType.PERSON_DOWN
    # One camera's verdict: possible until something else agrees.
    assert (incident.certainty, incident.severity) == (Certainty.POSSIBLE, Severity.SEVERE)


def test_a_fall_then_the_person_still_down_is_a_confirmed_person_down() -> None:
    fusion, state = Fusion(DEFAULT_RULES), SiteState()
    fusion.apply(state, [alarm("cam-sru-1", "video.fall", at_s=0, zone="sru", position=FCC2, rule="fall")])
    [incident] = state.incidents
    assert incident.type is IncidentType.PERSON_DOWN and incident.certainty is Certainty.POSSIBLE
    fusion.apply(
        state, [alarm("cam-sru-1", "video.person_down", at_s=30, zone="sru", position=FCC2, rule="down")]
    )
    assert len(state.incidents) == 1 and len(incident.members) == 2
    assert (incident.certainty, incident.severity) == (Certainty.OBSERVED, Severity.EXTREME)


def test_a_camera_that_goes_blind_is_an_equipment_fault_not_a_sighting() -> None:
    fusion, state = Fusion(DEFAULT_RULES), SiteState()
    blind = alarm(
        "cam-tf-501", "video.camera_health", at_s=0, zone="tank-farm", position=TANK,
        priority=Priority.MEDIUM, alarm_class=AlarmClass.SYSTEM, rule="camera-health",
    )  # fmt: skip
    fusion.apply(state, [blind])
    [incident] = state.incidents
    assert incident.type is IncidentType.EQUIPMENT_FAULT
    # The camera's own report of its picture is a fact, not a camera's guess at a scene.
    assert incident.certainty is Certainty.LIKELY


def test_intrusion_loitering_and_line_crossing_make_one_intrusion_and_ppe_its_own() -> None:
    fusion, state = Fusion(DEFAULT_RULES), SiteState()
    seen = [
        alarm("cam-tf-501", kind, at_s=n * 20, zone="tank-farm", position=TANK, rule=kind,
              condition=ConditionType.DETECTION, priority=Priority.MEDIUM)
        for n, kind in enumerate(("video.intrusion", "video.loitering", "video.line_crossing"))
    ]  # fmt: skip
    ppe = alarm(
        "cam-lr-401", "video.ppe_violation", at_s=70, zone="loading-rack", position=CDU1,
        condition=ConditionType.DETECTION, priority=Priority.LOW, rule="camera-ppe",
    )  # fmt: skip
    fusion.apply(state, [*seen, ppe])
    assert sorted((i.type, len(i.members)) for i in state.incidents) == [
        (IncidentType.INTRUSION, 3),
        (IncidentType.PPE_VIOLATION, 1),
    ]


def test_a_redelivered_alarm_changes_nothing() -> None:
    fusion, state = Fusion(DEFAULT_RULES), SiteState()
    signals = gas_leak_spreading()
    fusion.apply(state, signals)
    before = shape(state)
    assert fusion.apply(state, signals) == []
    assert fusion.apply(state, [signals[1]]) == []
    assert shape(state) == before


def test_out_of_order_arrival_yields_the_same_incidents() -> None:
    scenario = [
        *gas_leak_spreading(),
        alarm("fd-tf-501", "flame", at_s=100, zone="tank-farm", position=TANK),
        alarm("hd-tf-501", "temperature", at_s=110, zone="tank-farm", position=TANK),
        alarm("vt-c201", "vibration", at_s=50, zone="fcc-2", position=FCC2, alarm_class=AlarmClass.EQUIPMENT),
        alarm("gd-cdu1-102", "gas.co", at_s=500, zone="cdu-1", position=CDU1, condition=ConditionType.STALE),
    ]
    fusion = Fusion(DEFAULT_RULES)
    in_order = SiteState()
    fusion.apply(in_order, scenario)
    expected = shape(in_order)
    assert len(expected) == 4  # gas release, fire, equipment fault, communication loss
    rng = random.Random(7)
    for _ in range(20):
        shuffled = scenario[:]
        rng.shuffle(shuffled)
        # In one batch, in any order...
        batch = SiteState()
        fusion.apply(batch, shuffled)
        assert shape(batch) == expected
    # ... and one by one with the late ones last: a late alarm within the window still joins.
    late = SiteState()
    for signal in sorted(scenario, key=lambda s: s.at, reverse=True):
        fusion.apply(late, [signal])
    assert shape(late) == expected


def test_returns_resolve_per_rule() -> None:
    rules = (
        FusionRule(
            type=IncidentType.EQUIPMENT_FAULT, classes=(AlarmClass.EQUIPMENT,), radius_m=0, resolve_on="all"
        ),
    )
    fusion, state = Fusion(rules), SiteState()
    a = alarm("vt-p101a", "vibration", at_s=0, zone="cdu-1", position=CDU1, alarm_class=AlarmClass.EQUIPMENT)
    b = alarm("vt-p101b", "vibration", at_s=5, zone="cdu-1", position=CDU1, alarm_class=AlarmClass.EQUIPMENT)
    fusion.apply(state, [a, b])
    [incident] = state.incidents
    back_a = alarm(
        "vt-p101a",
        "vibration",
        at_s=60,
        zone="cdu-1",
        position=CDU1,
        alarm_class=AlarmClass.EQUIPMENT,
        active=False,
    )
    assert [c.kind for c in fusion.apply(state, [back_a])] == [ChangeKind.RETURNED]
    assert incident.status is Status.OPEN
    back_b = alarm(
        "vt-p101b",
        "vibration",
        at_s=90,
        zone="cdu-1",
        position=CDU1,
        alarm_class=AlarmClass.EQUIPMENT,
        active=False,
    )
    assert [c.kind for c in fusion.apply(state, [back_b])] == [ChangeKind.RETURNED, ChangeKind.RESOLVED]
    assert incident.status is Status.RESOLVED
    # The same pump alarming again after resolution is a new incident.
    again = alarm(
        "vt-p101a", "vibration", at_s=120, zone="cdu-1", position=CDU1, alarm_class=AlarmClass.EQUIPMENT
    )
    fusion.apply(state, [again])
    assert [i.status for i in state.incidents] == [Status.RESOLVED, Status.OPEN]


def test_create_on_all_waits_for_each_kind() -> None:
    rules = (
        FusionRule(
            type=IncidentType.INTRUSION,
            kinds=("video.intrusion", "door.open"),
            create_on="all",
            window_s=60,
            radius_m=50,
        ),
    )
    fusion, state = Fusion(rules), SiteState()
    fusion.apply(state, [alarm("cam-gate", "video.intrusion", at_s=0, zone="gate", position=TANK)])
    assert state.incidents == []
    fusion.apply(state, [alarm("door-gate", "door.open", at_s=200, zone="gate", position=TANK)])
    assert state.incidents == []  # too late for the camera's alarm
    again = alarm("cam-gate", "video.intrusion", at_s=230, zone="gate", position=TANK, rule="p2")
    fusion.apply(state, [again])
    [incident] = state.incidents
    assert len(incident.members) == 2


def test_two_hundred_alarms_in_five_minutes_are_one_flood_plus_the_safety_incidents() -> None:
    fusion, state = Fusion(DEFAULT_RULES), SiteState()
    rng = random.Random(11)
    process = [
        alarm(
            f"pt-{n:03d}",
            "pressure",
            at_s=n * 1.5,
            zone=f"unit-{n % 7}",
            position=(CDU1[0] + n * 0.001, CDU1[1]),
            alarm_class=AlarmClass.PROCESS,
            priority=rng.choice([Priority.LOW, Priority.MEDIUM]),
        )
        for n in range(197)
    ]
    safety = [
        alarm("gd-fcc2-203", "gas.h2s", at_s=100, zone="fcc-2", position=FCC2),
        alarm("gd-fcc2-204", "gas.h2s", at_s=130, zone="fcc-2", position=FCC2),
        alarm("fd-tf-501", "flame", at_s=200, zone="tank-farm", position=TANK),
    ]
    # The alarm engine saw the 11th activation in 10 minutes at 15 s and said the site floods.
    began = FloodSignal(
        id="flood-1",
        tenant="ulsan-refining",
        site="ulsan-refinery",
        began=True,
        at=T0 + timedelta(seconds=15),
        since=T0 + timedelta(seconds=15),
    )
    inputs = [*process, *safety]
    rng.shuffle(inputs)
    # What came before the edge was fused alone; then the edge; then the rest.
    before = [s for s in inputs if s.at < began.at]
    after = [s for s in inputs if s.at >= began.at]
    fusion.apply(state, before)
    fusion.apply(state, [began])
    fusion.apply(state, after)

    live = [i for i in state.incidents if i.is_live]
    floods = [i for i in live if i.type is IncidentType.ALARM_FLOOD]
    assert len(floods) == 1
    [flood] = floods
    assert flood.counts["total"] == 197
    assert flood.counts["class.process"] == 197
    assert flood.counts["priority.low"] + flood.counts["priority.medium"] == 197
    ranking = flood.first_out()
    assert ranking[0].alarm_id == "pt-000--r"  # the first-out alarm heads the ranking
    assert [m.at for m in ranking] == sorted(m.at for m in ranking)
    others = sorted(i.type for i in live if i is not flood)
    assert others == [IncidentType.FIRE, IncidentType.GAS_RELEASE]
    # Incidents folded into the flood are closed, not lost.
    assert all(i.status is Status.CLOSED for i in state.incidents if i.type is IncidentType.EQUIPMENT_FAULT)

    ended = FloodSignal(
        id="flood-2",
        tenant="ulsan-refining",
        site="ulsan-refinery",
        began=False,
        at=T0 + timedelta(minutes=20),
        since=began.since,
        activations=197,
    )
    changes = fusion.apply(state, [ended])
    assert [c.kind for c in changes] == [ChangeKind.RESOLVED]
    assert flood.status is Status.RESOLVED
    # After the flood, a process alarm opens its own incident again.
    fusion.apply(
        state,
        [
            alarm(
                "pt-900", "pressure", at_s=1500, zone="unit-1", position=CDU1, alarm_class=AlarmClass.PROCESS
            )
        ],
    )
    assert state.incidents[-1].type is IncidentType.EQUIPMENT_FAULT


def test_change_ids_are_stable_for_the_same_input() -> None:
    signals = gas_leak_spreading()
    first, second = SiteState(), SiteState()
    a = Fusion(DEFAULT_RULES).apply(first, signals)
    b = Fusion(DEFAULT_RULES).apply(second, list(reversed(signals)))
    assert [c.id for c in a] == [c.id for c in b]
    assert len({c.id for c in a}) == len(a)


def test_a_late_alarm_of_the_floods_time_is_counted_in_it_after_the_end() -> None:
    # Alarms and flood edges reach fusion through two consumers: the end may come first.
    fusion, state = Fusion(DEFAULT_RULES), SiteState()
    since = T0 + timedelta(seconds=20)
    began = FloodSignal(
        id="f-1", tenant="ulsan-refining", site="ulsan-refinery", began=True, at=since, since=since
    )
    ended = FloodSignal(
        id="f-2",
        tenant="ulsan-refining",
        site="ulsan-refinery",
        began=False,
        at=T0 + timedelta(minutes=10),
        since=since,
    )
    fusion.apply(state, [began, ended])
    late = alarm(
        "gd-tf-501",
        "gas.lel",
        at_s=50,
        zone="tank-farm",
        position=TANK,
        alarm_class=AlarmClass.SYSTEM,
        condition=ConditionType.STALE,
    )
    changes = fusion.apply(state, [late])
    [flood] = state.incidents
    assert flood.status is Status.RESOLVED  # counted, not reopened
    assert flood.counts["total"] == 1
    assert changes[0].kind is ChangeKind.JOINED
    # After the flood's time, a system alarm is its own incident again.
    after = alarm(
        "gd-tf-502",
        "gas.lel",
        at_s=900,
        zone="tank-farm",
        position=TANK,
        alarm_class=AlarmClass.SYSTEM,
        condition=ConditionType.STALE,
    )
    fusion.apply(state, [after])
    assert state.incidents[-1].type is IncidentType.COMM_LOSS
