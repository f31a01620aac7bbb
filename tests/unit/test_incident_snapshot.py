"""An incident's members keep the picture of the detection that raised their alarm: in the
incident, on the INCIDENTS change, in the responders' JSON, and across a body stored before."""

from __future__ import annotations

import msgspec

from services.incidents.adapters.messages import change_message
from services.incidents.channel import INCIDENT_CHANNEL
from services.incidents.domain.fusion import Fusion, SiteState
from services.incidents.domain.incident import Incident
from services.incidents.domain.model import Signal
from services.incidents.domain.rules import DEFAULT_RULES
from services.incidents.domain.timeline import Entry
from services.incidents.read_json import member_json
from tests.unit.test_incident_fusion import FCC2, alarm

FIRST, AGAIN = "/v1/snapshots/01KB0000000000000000000001", "/v1/snapshots/01KB0000000000000000000002"


def fall(at_s: float, *, snapshot: str = "", active: bool = True) -> Signal:
    signal = alarm("cam-fcc-1", "video.person_down", at_s=at_s, zone="fcc-2", position=FCC2, active=active)
    return msgspec.structs.replace(signal, snapshot=snapshot)


def test_a_member_keeps_its_alarms_snapshot_and_a_new_raise_brings_the_new_one() -> None:
    fusion, state = Fusion(DEFAULT_RULES), SiteState()
    # A gateway's fall detection posted without a picture joins it too.
    posted = alarm("cam-fcc-2", "video.fall", at_s=0, zone="fcc-2", position=FCC2)
    fusion.apply(state, [posted, fall(5, snapshot=FIRST)])
    [incident] = state.incidents
    by_device = {m.device: m for m in incident.members}
    assert by_device["cam-fcc-1"].snapshot == FIRST
    assert by_device["cam-fcc-2"].snapshot == ""

    changes = fusion.apply(state, [fall(20, active=False), fall(30, snapshot=AGAIN)])
    assert changes
    [incident] = state.incidents
    assert {m.device: m for m in incident.members}["cam-fcc-1"].snapshot == AGAIN


def test_the_change_message_and_the_responders_json_carry_it() -> None:
    fusion, state = Fusion(DEFAULT_RULES), SiteState()
    changes = fusion.apply(state, [fall(0, snapshot=FIRST)])
    [incident] = state.incidents
    entry = Entry.of_fusion(changes[0], incident.status, incident.tenant)

    message = INCIDENT_CHANNEL.decode(change_message(entry, incident).payload)

    assert [m.snapshot for m in message.incident.members] == [FIRST]
    assert member_json(incident.members[0], 1)["snapshot"] == FIRST


def test_an_incident_stored_before_members_had_snapshots_reads_back_without() -> None:
    fusion, state = Fusion(DEFAULT_RULES), SiteState()
    fusion.apply(state, [fall(0, snapshot=FIRST)])
    body = msgspec.to_builtins(state.incidents[0])
    del body["members"][0]["snapshot"]

    stored = msgspec.json.decode(msgspec.json.encode(body), type=Incident)

    assert stored.members[0].snapshot == ""
    assert member_json(stored.members[0], 1)["snapshot"] is None
