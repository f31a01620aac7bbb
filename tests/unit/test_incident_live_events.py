"""The live stream's events without servers: ids a client resumes from, frames, what each client
sees, the JSON of a change (the same as the incident list's), and a slow client's bounded queue."""

from __future__ import annotations

import asyncio
import json

import pytest

from services.common.contracts import AlarmState, AlarmTransition
from services.incidents.adapters.messages import change_to_proto
from services.incidents.domain.fusion import Fusion, SiteState
from services.incidents.domain.rules import DEFAULT_RULES
from services.incidents.domain.timeline import Entry
from services.incidents.live_events import (
    ALARMS,
    INCIDENTS,
    BadEventId,
    LiveEvent,
    Position,
    alarm_event,
    heartbeat,
    incident_event,
    notice,
)
from services.incidents.live_stream import Client, Scope
from services.incidents.read_json import incident_json
from tests.unit.test_incident_fusion import gas_leak_spreading


def test_an_event_id_is_both_positions_and_reads_back() -> None:
    position = Position(1042, 877)
    assert position.event_id() == "1042-877"
    assert Position.parse("1042-877") == position
    assert Position.parse(" 0-0 ") == Position(0, 0)


@pytest.mark.parametrize(
    "raw", ["", "abc", "12", "1-", "-1-2", "1-2-3", "1_2", "\uff11-\uff12", "1" * 20 + "-1"]
)
def test_an_id_this_stream_never_sent_is_refused(raw: str) -> None:
    with pytest.raises(BadEventId):
        Position.parse(raw)


def test_a_position_only_moves_forward_on_its_own_stream() -> None:
    position = Position(10, 20)
    assert position.after(INCIDENTS, 11) == Position(11, 20)
    assert position.after(ALARMS, 25) == Position(10, 25)
    assert position.after(INCIDENTS, 3) == position  # an older change never moves it back


def _opened_gas_release() -> tuple[LiveEvent, dict[str, object], dict[str, object]]:
    state = SiteState()
    changes = Fusion(DEFAULT_RULES).apply(state, gas_leak_spreading())
    [incident] = state.incidents
    last = changes[-1]
    entry = Entry.of_fusion(last, incident.status, incident.tenant)
    incident.updated_at = max(incident.updated_at, entry.at)  # as the service stores it
    event = incident_event(change_to_proto(entry, incident), 7, ("ko", "en"))
    return event, incident_json(incident, "en"), incident_json(incident, "ko")


def test_an_incident_change_reads_as_the_incident_list_shows_it_in_either_language() -> None:
    event, listed_en, listed_ko = _opened_gas_release()
    assert (event.stream, event.seq, event.tenant, event.site, event.type) == (
        INCIDENTS,
        7,
        "ulsan-refining",
        "ulsan-refinery",
        "gas_release",
    )
    english = json.loads(event.data["en"])
    korean = json.loads(event.data["ko"])
    assert english["incident"] == listed_en
    assert korean["incident"] == listed_ko
    assert english["incident"]["title"] == "Gas release in fcc-2, cdu-1"
    assert english["entry"]["actor"] == "system"
    assert english["entry"]["change"] == event.name.removeprefix("incident.")


def test_a_frame_carries_the_clients_position_name_and_json() -> None:
    event, _, _ = _opened_gas_release()
    frame = event.frame(Position(7, 3), "en")
    lines = frame.decode().split("\n")
    assert lines[0] == "id: 7-3"
    assert lines[1] == f"event: {event.name}"
    assert json.loads(lines[2].removeprefix("data: "))["incident"]["language"] == "en"
    assert frame.endswith(b"\n\n") and frame.count(b"\n") == 4  # one event, one data line
    assert heartbeat().startswith(b":")
    assert notice("stream.behind", {"lastEventId": "7-3"}, Position(7, 3)).startswith(
        b"id: 7-3\nevent: stream.behind\n"
    )


def test_an_alarm_transition_reads_as_the_alarm_api_words_it() -> None:
    message = AlarmTransition(alarm_id="gd-fcc2-203--h2s-hh", old_state=AlarmState.ALARM_STATE_NORM)
    message.new_state = AlarmState.ALARM_STATE_UNACK
    message.envelope.tenant, message.envelope.site, message.envelope.id = (
        "t",
        "s",
        "01J0000000000000000000000A",
    )
    message.envelope.time.FromSeconds(1_780_000_000)
    message.alarm.device, message.alarm.rule, message.alarm.active = "gd-fcc2-203", "h2s-hh", True
    message.alarm.chattering = True

    event = alarm_event(message, 12)

    assert (event.stream, event.type, event.name) == (ALARMS, "alarm", "alarm.transition")
    body = json.loads(event.frame(Position(0, 12), "ko").split(b"data: ")[1])
    assert body["id"] == "gd-fcc2-203--h2s-hh"
    assert (body["old_state"], body["state"], body["active"]) == ("NORM", "UNACK", True)
    assert body["flags"] == ["chattering"] and body["shelved_until"] is None
    assert body["changed_at"] == "2026-05-28T20:26:40Z"


def _event(tenant: str = "t", site: str = "a", type_: str = "fire", stream: str = INCIDENTS) -> LiveEvent:
    return LiveEvent(stream, 1, tenant, site, type_, "incident.opened", {"en": b"{}"})


def test_a_client_sees_its_tenant_its_sites_its_types_and_its_streams_only() -> None:
    scope = Scope("t", frozenset({"a", "b"}), frozenset({"fire", "alarm"}), frozenset({INCIDENTS, ALARMS}))
    assert scope.wants(_event())
    assert scope.wants(_event(site="b", type_="alarm", stream=ALARMS))
    assert not scope.wants(_event(tenant="other"))
    assert not scope.wants(_event(site="c"))
    assert not scope.wants(_event(type_="gas_release"))
    incidents_only = Scope("t", frozenset({"a"}), None, frozenset({INCIDENTS}))
    assert incidents_only.wants(_event(type_="gas_release"))
    assert not incidents_only.wants(_event(type_="alarm", stream=ALARMS))
    # Replays read the narrowest subjects that still hold the scope's changes.
    assert incidents_only.filter_subject(INCIDENTS) == "incident.t.a.>"
    assert scope.filter_subject(ALARMS) == "alarm.t.>"


def test_a_client_that_stops_reading_is_marked_behind_and_holds_no_more() -> None:
    client = Client(Scope("t", frozenset({"a"}), None, frozenset({INCIDENTS})), asyncio.Queue(3))
    for _ in range(10):
        client.offer(_event())
    assert client.behind
    assert client.queue.qsize() == 3 and client.dropped == 7
