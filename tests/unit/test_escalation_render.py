"""A notification's JSON: a CloudEvents 1.0 structured event whose data is the incident exactly as
the incidents API shows it, in the endpoint's language, read from the INCIDENTS message."""

from __future__ import annotations

import msgspec
import pytest
from nats.aio.msg import Msg

from services.common.bus.consumer import Poison
from services.escalation.adapters.cloudevent import cloudevent
from services.escalation.adapters.incident_change import read_change
from services.incidents.adapters.messages import change_message
from services.incidents.domain.fusion import Fusion, SiteState
from services.incidents.domain.rules import DEFAULT_RULES
from services.incidents.domain.timeline import Entry
from services.incidents.read_json import incident_json
from tests.unit.test_incident_fusion import gas_leak_spreading


def as_received(subject: str, payload: bytes) -> Msg:
    return Msg(_client=None, subject=subject, data=payload)  # type: ignore[arg-type]


def opened() -> tuple[Msg, object, Entry]:
    state = SiteState()
    changes = Fusion(DEFAULT_RULES).apply(state, gas_leak_spreading())
    [incident] = state.incidents
    entry = Entry.of_fusion(changes[0], incident.status, incident.tenant)
    out = change_message(entry, incident)
    return as_received(out.subject, out.payload), incident, entry


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_the_event_carries_the_incident_as_the_api_shows_it(lang: str) -> None:
    msg, incident, _ = opened()
    change = read_change(msg)
    assert (change.tenant, change.site, change.change) == ("ulsan-refining", "ulsan-refinery", "opened")
    assert change.severity == "Extreme" and change.type == "gas_release"

    event = msgspec.json.decode(cloudevent(change, "msg_X", lang))

    assert event["specversion"] == "1.0" and event["id"] == "msg_X"
    assert event["type"] == "org.safetyhub.incident.opened.v1"
    assert event["subject"] == change.incident_id
    assert event["source"] == "/escalation/ulsan-refining/ulsan-refinery"
    assert event["datacontenttype"] == "application/json"
    assert event["data"] == incident_json(incident, lang)  # type: ignore[arg-type]
    assert event["data"]["language"] == lang


def test_a_message_on_another_incident_s_subject_is_poison() -> None:
    msg, _, _ = opened()
    moved = as_received(msg.subject.rsplit(".", 1)[0] + ".01JD0000000000000000000000", msg.data)
    with pytest.raises(Poison, match="does not match"):
        read_change(moved)
    with pytest.raises(Poison):
        read_change(as_received(msg.subject, b"\xff\xff not protobuf"))
