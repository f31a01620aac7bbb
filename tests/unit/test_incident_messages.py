"""Incident changes on the bus: subject, CloudEvents headers and the protobuf a consumer reads."""

from __future__ import annotations

from services.common.contracts import CapCertainty, CapSeverity, IncidentStatus, IncidentType
from services.incidents.adapters.messages import change_message
from services.incidents.channel import INCIDENT_CHANNEL
from services.incidents.domain.fusion import Fusion, SiteState
from services.incidents.domain.rules import DEFAULT_RULES
from services.incidents.domain.timeline import Entry
from tests.unit.test_incident_fusion import gas_leak_spreading


def test_an_opened_gas_release_as_escalation_will_read_it() -> None:
    state, signals = SiteState(), gas_leak_spreading()
    changes = Fusion(DEFAULT_RULES).apply(state, signals)
    [incident] = state.incidents
    entry = Entry.of_fusion(changes[0], incident.status, incident.tenant)

    out = change_message(entry, incident)

    assert out.subject == f"incident.ulsan-refining.ulsan-refinery.{incident.id}"
    assert out.headers["Nats-Msg-Id"] == out.headers["ce-id"] == entry.id
    assert out.headers["ce-type"] == "org.safetyhub.incident.opened.v1"
    assert out.headers["ce-source"] == "/incidents"
    message = INCIDENT_CHANNEL.decode(out.payload)
    assert message.envelope.id == entry.id
    assert message.envelope.tenant == "ulsan-refining"
    assert message.envelope.causation_id == signals[0].id  # the alarm transition that opened it
    assert message.incident.type == IncidentType.INCIDENT_TYPE_GAS_RELEASE
    assert message.incident.status == IncidentStatus.INCIDENT_STATUS_OPEN
    assert message.incident.severity == CapSeverity.CAP_SEVERITY_EXTREME
    assert message.incident.certainty == CapCertainty.CAP_CERTAINTY_LIKELY
    assert list(message.incident.zones) == ["fcc-2", "cdu-1"]
    assert [m.device for m in message.incident.members] == [s.device for s in signals]
    assert message.incident.title.en == "Gas release in fcc-2, cdu-1"
    assert message.incident.title.ko.startswith("가스 누출")
    assert message.incident.actions[0].en.startswith("Check the wind")
    assert message.entry.actor == "system" and message.entry.change == "opened"


def test_the_same_change_twice_is_the_same_message_id() -> None:
    # A redelivered batch is fused again from scratch in a rolled-back transaction's place.
    signals = gas_leak_spreading()
    ids = []
    for _ in range(2):
        state = SiteState()
        changes = Fusion(DEFAULT_RULES).apply(state, signals)
        [incident] = state.incidents
        entries = [Entry.of_fusion(c, incident.status, incident.tenant) for c in changes]
        ids.append([change_message(entry, incident).headers["ce-id"] for entry in entries])
    assert ids[0] == ids[1]
    assert len(set(ids[0])) == len(ids[0])
