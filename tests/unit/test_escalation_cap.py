"""CAP 1.2 alerts of incident changes, validated against the OASIS cap12.xsd kept in the test data.

The incidents are made the way the hub makes them: alarms fused by the incidents domain, turned
into the IncidentChange the INCIDENTS stream carries; the site is the demo plant's registry entry.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import xmlschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.contracts import (
    CapCertainty,
    CapSeverity,
    CapUrgency,
    IncidentChange,
    IncidentStatus,
    IncidentType,
)
from services.common.sites.model import Site, Zone
from services.common.sites.registry import SiteRegistry
from services.escalation.formats import CapAlert, CapError, CapOrigin, CapReference, render_cap
from services.incidents.adapters.messages import change_to_proto
from services.incidents.domain.fusion import Fusion, SiteState
from services.incidents.domain.rules import DEFAULT_RULES
from services.incidents.domain.timeline import Entry
from tests.unit.test_incident_fusion import gas_leak_spreading

REPO = Path(__file__).resolve().parents[2]
CAP_XSD = REPO / "tests" / "fixtures" / "cap" / "cap12.xsd"
NS = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
CAP_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d")
ORIGIN = CapOrigin(
    sender="safetyhub@ulsan-refinery.example.org",
    name="Ulsan Refinery control room",
    web="https://hub.example.org/incidents",
)


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(CAP_XSD)


@pytest.fixture(scope="module")
def site() -> Site:
    found = SiteRegistry.load([REPO / "sites" / "ulsan-demo.yaml"]).site("ulsan-refinery")
    assert found is not None
    return found


def opened() -> IncidentChange:
    """A gas release spreading from FCC-2 into CDU-1, as the incidents service announces it."""
    state = SiteState()
    changes = Fusion(DEFAULT_RULES).apply(state, gas_leak_spreading())
    [incident] = state.incidents
    return change_to_proto(Entry.of_fusion(changes[0], incident.status, incident.tenant), incident)


def later(
    change: IncidentChange, kind: str, status: int, *, minutes: int, **incident: object
) -> IncidentChange:
    """The same incident after a person's action, as the incidents service would announce it."""
    out = IncidentChange()
    out.CopyFrom(change)
    out.entry.id = f"{change.entry.id}-{kind}"
    out.entry.change, out.entry.actor, out.entry.status = kind, "kim.minji", status  # type: ignore[assignment]
    out.entry.time.FromDatetime(change.entry.time.ToDatetime() + timedelta(minutes=minutes))
    out.envelope.id, out.envelope.time.seconds = out.entry.id, out.entry.time.seconds
    out.incident.status = status  # type: ignore[assignment]
    out.incident.version += 1
    for name, value in incident.items():
        setattr(out.incident, name, value)
    return out


def parse(alert: CapAlert) -> ET.Element:
    return ET.fromstring(alert.xml)


def one(root: ET.Element, path: str) -> str:
    found = root.find(path, NS)
    assert found is not None, f"no {path}"
    return found.text or ""


def every(root: ET.Element, path: str) -> list[str]:
    return [element.text or "" for element in root.findall(path, NS)]


def test_the_first_notice_is_an_alert_that_validates_in_english_and_korean(
    schema: xmlschema.XMLSchema, site: Site
) -> None:
    change = opened()
    for language, tag in (("en", "en-US"), ("ko", "ko-KR")):
        alert = render_cap(change, site, origin=ORIGIN, language=language)  # type: ignore[arg-type]
        schema.validate(alert.xml)
        root = parse(alert)
        assert alert.msg_type == one(root, "cap:msgType") == "Alert"
        assert one(root, "cap:status") == "Actual" and one(root, "cap:scope") == "Public"
        assert one(root, "cap:sender") == ORIGIN.sender
        assert one(root, "cap:identifier") == alert.identifier
        assert one(root, "cap:incidents") == change.incident.incident_id
        assert root.find("cap:references", NS) is None
        assert one(root, "cap:info/cap:language") == tag
        assert every(root, "cap:info/cap:category") == ["Env", "Safety"]
        assert every(root, "cap:info/cap:responseType") == ["Evacuate"]  # an extreme gas release
        assert one(root, "cap:info/cap:severity") == "Extreme"
        assert one(root, "cap:info/cap:certainty") == "Likely"
        assert one(root, "cap:info/cap:urgency") == "Immediate"
        assert one(root, "cap:info/cap:senderName") == ORIGIN.name
        assert one(root, "cap:info/cap:web") == ORIGIN.web
    en = parse(render_cap(change, site, origin=ORIGIN, language="en"))
    ko = parse(render_cap(change, site, origin=ORIGIN, language="ko"))
    assert one(en, "cap:info/cap:event") == "Gas release"
    assert one(ko, "cap:info/cap:event") == "가스 누출"
    assert one(en, "cap:info/cap:headline") == change.incident.title.en == "Gas release in fcc-2, cdu-1"
    assert one(ko, "cap:info/cap:headline") == change.incident.title.ko
    # The instruction is the rules' operator actions, in the endpoint's language.
    assert one(en, "cap:info/cap:instruction").splitlines() == [a.en for a in change.incident.actions]
    # The same action of several alarms of one rule is said once.
    assert [a.ko for a in change.incident.actions][1:] == ["조치"] * 4
    assert one(ko, "cap:info/cap:instruction").splitlines() == [change.incident.actions[0].ko, "조치"]
    assert "Fluid Catalytic Cracker 2" in one(en, "cap:info/cap:description")
    assert "상태: 발생" in one(ko, "cap:info/cap:description")


def test_the_area_is_the_incidents_zones_as_closed_polygons(schema: xmlschema.XMLSchema, site: Site) -> None:
    root = parse(render_cap(opened(), site, origin=ORIGIN, language="en"))
    area = "cap:info/cap:area"
    assert one(root, f"{area}/cap:areaDesc") == (
        "Fluid Catalytic Cracker 2, Crude Distillation Unit 1 - Ulsan Refinery (demo)"
    )
    polygons = every(root, f"{area}/cap:polygon")
    zones = {zone.id: zone for zone in site.zones}
    assert len(polygons) == 2
    for ring, zone_id in zip(polygons, ("fcc-2", "cdu-1"), strict=True):
        points = [tuple(float(v) for v in p.split(",")) for p in ring.split(" ")]
        assert points[0] == points[-1]  # closed
        assert points[:-1] == [tuple(p) for p in zones[zone_id].polygon]
        assert len(points) >= 4
    assert root.find(f"{area}/cap:circle", NS) is None


def test_later_changes_are_updates_and_the_resolution_a_cancel_each_naming_the_earlier_alerts(
    schema: xmlschema.XMLSchema, site: Site
) -> None:
    first = opened()
    acked = later(first, "acknowledged", IncidentStatus.INCIDENT_STATUS_ACKNOWLEDGED, minutes=2)
    resolved = later(
        acked,
        "resolved",
        IncidentStatus.INCIDENT_STATUS_RESOLVED,
        minutes=40,
        resolution_code="leak_isolated",
        resolution_note="flange on P-205A re-torqued & tested",
    )
    for language in ("en", "ko"):
        alert = render_cap(first, site, origin=ORIGIN, language=language)  # type: ignore[arg-type]
        update = render_cap(acked, site, origin=ORIGIN, language=language, earlier=[alert.reference])  # type: ignore[arg-type]
        cancel = render_cap(
            resolved,
            site,
            origin=ORIGIN,
            language=language,  # type: ignore[arg-type]
            earlier=[alert.reference, update.reference],
        )
        for rendered in (alert, update, cancel):
            schema.validate(rendered.xml)
        assert [alert.msg_type, update.msg_type, cancel.msg_type] == ["Alert", "Update", "Cancel"]
        assert len({alert.identifier, update.identifier, cancel.identifier}) == 3
        assert one(parse(update), "cap:references") == f"{ORIGIN.sender},{alert.identifier},{alert.sent}"
        assert one(parse(cancel), "cap:references").split(" ") == [
            f"{ORIGIN.sender},{alert.identifier},{alert.sent}",
            f"{ORIGIN.sender},{update.identifier},{update.sent}",
        ]
        root = parse(cancel)
        assert every(root, "cap:info/cap:responseType") == ["AllClear"]
        assert one(root, "cap:note") == "leak_isolated: flange on P-205A re-torqued & tested"
        assert root.find("cap:info/cap:instruction", NS) is None  # nothing left to do
        assert "leak_isolated" in one(root, "cap:info/cap:description")
        assert one(root, "cap:incidents") == one(parse(alert), "cap:incidents")
    en = parse(render_cap(resolved, site, origin=ORIGIN, language="en"))
    assert one(en, "cap:info/cap:headline") == "Resolved: Gas release in fcc-2, cdu-1"
    # A closed incident is cancelled too; a reference kept as text reads back the same.
    closed = later(resolved, "closed", IncidentStatus.INCIDENT_STATUS_CLOSED, minutes=60)
    kept = str(render_cap(first, site, origin=ORIGIN, language="en").reference)
    again = render_cap(closed, site, origin=ORIGIN, language="en", earlier=[CapReference.parse(kept)])
    assert again.msg_type == "Cancel"


def test_the_same_change_renders_the_same_bytes_so_a_receiver_can_drop_a_copy(site: Site) -> None:
    change = opened()
    # Another worker, or the same after a restart, reads the change again from the stream.
    again = IncidentChange.FromString(change.SerializeToString())
    a = render_cap(change, site, origin=ORIGIN, language="ko")
    b = render_cap(again, site, origin=ORIGIN, language="ko")
    assert a == b
    assert a.identifier != render_cap(change, site, origin=ORIGIN, language="en").identifier
    assert a.identifier != render_cap(opened(), site, origin=ORIGIN, language="ko").identifier
    assert not re.search(r"[\s,<&]", a.identifier)
    # Notified again (a retry after the caller kept its reference): still the same alert.
    assert render_cap(change, site, origin=ORIGIN, language="ko", earlier=[a.reference]) == a


def test_the_web_link_can_name_the_incident(schema: xmlschema.XMLSchema, site: Site) -> None:
    change = opened()
    origin = CapOrigin(sender=ORIGIN.sender, web="https://hub.example.org/incidents/{incident_id}")
    alert = render_cap(change, site, origin=origin, language="en")
    schema.validate(alert.xml)
    assert one(parse(alert), "cap:info/cap:web") == (
        f"https://hub.example.org/incidents/{change.incident.incident_id}"
    )
    assert one(parse(alert), "cap:info/cap:senderName") == site.name  # no name configured


def test_a_restricted_origin_says_for_whom(schema: xmlschema.XMLSchema, site: Site) -> None:
    origin = CapOrigin(sender=ORIGIN.sender, status="Exercise", restriction="울산 정유 종합상황실 & 소방")
    alert = render_cap(opened(), site, origin=origin, language="ko")
    schema.validate(alert.xml)
    root = parse(alert)
    assert one(root, "cap:status") == "Exercise"
    assert one(root, "cap:scope") == "Restricted"
    assert one(root, "cap:restriction") == "울산 정유 종합상황실 & 소방"


def test_times_are_in_the_sites_offset_without_fractions_or_z(
    schema: xmlschema.XMLSchema, site: Site
) -> None:
    change = opened()
    change.entry.time.FromDatetime(datetime(2026, 6, 3, 14, 3, 7, 654321, tzinfo=UTC))
    change.incident.opened_at.FromDatetime(datetime(2026, 6, 3, 14, 0, 0, 120000, tzinfo=UTC))
    root = parse(render_cap(change, site, origin=ORIGIN, language="en"))
    assert one(root, "cap:sent") == "2026-06-03T23:03:07+09:00"  # Asia/Seoul
    assert one(root, "cap:info/cap:onset") == "2026-06-03T23:00:00+09:00"

    for zone, winter, summer in (("UTC", "+00:00", "+00:00"), ("Europe/Berlin", "+01:00", "+02:00")):
        elsewhere = Site(**{**_fields(site), "timezone": zone})
        for month, offset in ((1, winter), (7, summer)):
            change.entry.time.FromDatetime(datetime(2026, month, 15, 12, 0, 0, 999999, tzinfo=UTC))
            alert = render_cap(change, elsewhere, origin=ORIGIN, language="en")
            schema.validate(alert.xml)
            sent = one(parse(alert), "cap:sent")
            assert CAP_TIME.fullmatch(sent) and sent.endswith(offset) and "Z" not in sent
            assert datetime.fromisoformat(sent) == datetime(2026, month, 15, 12, 0, 0, tzinfo=UTC)


def test_hangul_travels_as_utf8(site: Site) -> None:
    change = opened()
    change.incident.actions[0].ko = "풍향을 확인하고 바람 부는 쪽으로 대피하십시오"
    alert = render_cap(change, site, origin=ORIGIN, language="ko")
    assert alert.xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert "풍향을 확인하고".encode() in alert.xml  # as characters, not as character references
    root = ET.fromstring(alert.xml)
    first_line = one(root, "cap:info/cap:instruction").splitlines()[0]
    assert first_line == "풍향을 확인하고 바람 부는 쪽으로 대피하십시오"


def test_free_text_is_escaped_and_what_xml_cannot_carry_is_replaced(
    schema: xmlschema.XMLSchema, site: Site
) -> None:
    change = opened()
    change.incident.actions[0].en = 'Close <V-201> & "isolate" the bund'
    change.entry.note = "pressure < 2 bar && falling\x00\x1b\r\nsecond line"
    alert = render_cap(change, site, origin=ORIGIN, language="en")
    schema.validate(alert.xml)
    assert b'Close &lt;V-201&gt; &amp; "isolate" the bund' in alert.xml
    assert b"<V-201>" not in alert.xml
    root = parse(alert)
    assert one(root, "cap:info/cap:instruction").splitlines()[0] == 'Close <V-201> & "isolate" the bund'
    assert "pressure < 2 bar && falling\ufffd\ufffd\nsecond line" in one(root, "cap:info/cap:description")


def test_no_position_and_no_zone_gives_an_area_of_its_description_alone(
    schema: xmlschema.XMLSchema, site: Site
) -> None:
    change = opened()
    del change.incident.zones[:]
    del change.incident.members[:]
    change.incident.ClearField("latitude")
    change.incident.ClearField("longitude")
    alert = render_cap(change, site, origin=ORIGIN, language="en")
    schema.validate(alert.xml)
    area = parse(alert).find("cap:info/cap:area", NS)
    assert area is not None
    assert [child.tag.split("}")[1] for child in area] == ["areaDesc"]
    assert one(area, "cap:areaDesc") == "Ulsan Refinery (demo)"


def test_without_a_zone_outline_the_area_is_a_circle_around_the_position(
    schema: xmlschema.XMLSchema, site: Site
) -> None:
    change = opened()
    del change.incident.zones[:]
    change.incident.latitude, change.incident.longitude = 35.4771, 129.3601
    alert = render_cap(change, site, origin=ORIGIN, language="en")
    schema.validate(alert.xml)
    assert every(parse(alert), "cap:info/cap:area/cap:circle") == ["35.4771,129.3601 0.3"]
    # No position of its own: the first member's device, placed by the registry.
    change.incident.ClearField("latitude")
    change.incident.ClearField("longitude")
    assert change.incident.members[0].device == "gd-fcc2-203"  # at 35.47782, 129.35544
    wide = CapOrigin(sender=ORIGIN.sender, circle_radius_km=1.5)
    circle = every(
        parse(render_cap(change, site, origin=wide, language="en")), "cap:info/cap:area/cap:circle"
    )
    assert circle == ["35.47782,129.35544 1.5"]


def test_a_zone_outline_given_closed_is_closed_once(site: Site) -> None:
    square = ((35.0, 129.0), (35.0, 129.001), (35.001, 129.001), (35.001, 129.0), (35.0, 129.0))
    zone = Zone(id="tank-farm", name="Tank farm", hazard="flammable", polygon=square)
    there = Site(**{**_fields(site), "zones": (zone,)})
    change = opened()
    change.incident.zones[:] = ["tank-farm"]
    [ring] = every(parse(render_cap(change, there, origin=ORIGIN, language="en")), ".//cap:polygon")
    assert ring == "35,129 35,129.001 35.001,129.001 35.001,129 35,129"


def test_unspecified_and_unknown_codes_say_unknown(schema: xmlschema.XMLSchema, site: Site) -> None:
    change = opened()
    change.incident.severity = CapSeverity.CAP_SEVERITY_UNSPECIFIED
    change.incident.urgency = CapUrgency.CAP_URGENCY_UNSPECIFIED
    change.incident.certainty = 99  # type: ignore[assignment]  # a value added to the contract later
    change.incident.type = IncidentType.INCIDENT_TYPE_UNSPECIFIED
    alert = render_cap(change, site, origin=ORIGIN, language="en")
    schema.validate(alert.xml)
    root = parse(alert)
    codes = [one(root, f"cap:info/cap:{name}") for name in ("urgency", "severity", "certainty")]
    assert codes == ["Unknown"] * 3
    assert every(root, "cap:info/cap:category") == ["Other"]


_T, _S = IncidentType, CapSeverity


@pytest.mark.parametrize(
    "case",
    [
        (_T.INCIDENT_TYPE_FIRE, _S.CAP_SEVERITY_MODERATE, ["Fire"], "Evacuate"),
        (_T.INCIDENT_TYPE_GAS_RELEASE, _S.CAP_SEVERITY_MINOR, ["Env", "Safety"], "Monitor"),
        (_T.INCIDENT_TYPE_PERSON_DOWN, _S.CAP_SEVERITY_SEVERE, ["Rescue", "Health"], "Execute"),
        (_T.INCIDENT_TYPE_INTRUSION, _S.CAP_SEVERITY_MINOR, ["Security"], "Assess"),
        (_T.INCIDENT_TYPE_INTRUSION, _S.CAP_SEVERITY_EXTREME, ["Security"], "Avoid"),
        (_T.INCIDENT_TYPE_EQUIPMENT_FAULT, _S.CAP_SEVERITY_MINOR, ["Infra"], "Assess"),
        (_T.INCIDENT_TYPE_ALARM_FLOOD, _S.CAP_SEVERITY_MODERATE, ["Safety"], "Assess"),
    ],
)
def test_category_and_response_follow_the_incident_type(
    schema: xmlschema.XMLSchema, site: Site, case: tuple[int, int, list[str], str]
) -> None:
    kind, severity, categories, response = case
    change = opened()
    change.incident.type, change.incident.severity = kind, severity  # type: ignore[assignment]
    alert = render_cap(change, site, origin=ORIGIN, language="ko")
    schema.validate(alert.xml)
    root = parse(alert)
    assert every(root, "cap:info/cap:category") == categories
    assert every(root, "cap:info/cap:responseType") == [response]


def test_settings_and_references_that_cap_cannot_carry_are_refused(site: Site) -> None:
    for sender in ("", "control room", "a,b", "a<b", "a&b"):
        with pytest.raises(CapError, match=r"^sender: "):
            CapOrigin(sender=sender)
    # Read from a configuration file, the same refusal is a validation error naming the key.
    with pytest.raises(msgspec.ValidationError, match=r"^sender: must be"):
        msgspec.convert({"sender": "control room"}, CapOrigin)
    with pytest.raises(CapError, match=r"^web: "):
        CapOrigin(sender="hub", web="not a url")
    with pytest.raises(CapError, match=r"^circle_radius_km: "):
        CapOrigin(sender="hub", circle_radius_km=0)
    with pytest.raises(CapError, match=r"^references: "):
        CapReference.parse("hub,only-two")
    other = Site(**{**_fields(site), "id": "mipo-aromatics"})
    with pytest.raises(CapError, match=r"^site: "):
        render_cap(opened(), other, origin=ORIGIN, language="en")


def _fields(site: Site) -> dict[str, object]:
    return {name: getattr(site, name) for name in site.__struct_fields__}


# Any text a person or a rule may write, Hangul and XML's own characters included.
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
ZONES = st.sampled_from(["fcc-2", "cdu-1", "no-such-zone", ""])


ENDED = (IncidentStatus.INCIDENT_STATUS_RESOLVED, IncidentStatus.INCIDENT_STATUS_CLOSED)
INCIDENTS = st.fixed_dictionaries(
    {
        "title": st.tuples(TEXT, TEXT),
        "actions": st.lists(st.tuples(TEXT, TEXT), max_size=4),
        "note": TEXT,
        "resolution": st.tuples(TEXT, TEXT),
        "assignee": TEXT,
        "zones": st.lists(ZONES, max_size=3),
        "position": st.none() | st.tuples(st.floats(-90, 90), st.floats(-180, 180)),
        "status": st.sampled_from(list(IncidentStatus.values())),
        # Beyond the contract's values too: a producer newer than this consumer.
        "kind": st.integers(0, 12),
        "severity": st.integers(0, 7),
        "urgency": st.sampled_from(list(CapUrgency.values())),
        "certainty": st.sampled_from(list(CapCertainty.values())),
        # Not the epoch itself: protobuf's "no time" (the alert's time then comes from the envelope).
        "at": st.datetimes(datetime(1900, 1, 2), datetime(9999, 12, 30), timezones=st.just(UTC)).filter(
            lambda at: at != datetime(1970, 1, 1, tzinfo=UTC)
        ),
        "counts": st.dictionaries(TEXT, st.integers(0, 2**32 - 1), max_size=3),
        "language": st.sampled_from(["ko", "en"]),
        # Offsets of whole hours, of half and three quarters, with and without DST.
        "timezone": st.sampled_from(
            ["Asia/Seoul", "Europe/Berlin", "America/St_Johns", "UTC", "Asia/Kathmandu"]
        ),
        "earlier": st.integers(0, 3),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=INCIDENTS)
def test_any_incident_renders_to_schema_valid_cap(
    schema: xmlschema.XMLSchema, site: Site, case: dict[str, Any]
) -> None:
    change = opened()
    incident = change.incident
    incident.title.ko, incident.title.en = case["title"]
    del incident.actions[:]
    for ko, en in case["actions"]:
        text = incident.actions.add()
        text.ko, text.en = ko, en
    change.entry.note, incident.assignee = case["note"], case["assignee"]
    incident.resolution_code, incident.resolution_note = case["resolution"]
    incident.zones[:] = case["zones"]
    if case["position"] is None:
        incident.ClearField("latitude")
        incident.ClearField("longitude")
    else:
        incident.latitude, incident.longitude = case["position"]
    incident.status, incident.type, incident.severity = case["status"], case["kind"], case["severity"]
    incident.urgency, incident.certainty = case["urgency"], case["certainty"]
    change.entry.time.FromDatetime(case["at"])
    incident.counts.clear()
    incident.counts.update(case["counts"])
    there = Site(**{**_fields(site), "timezone": case["timezone"]})
    previous = [
        CapReference(sender=ORIGIN.sender, identifier=f"earlier-{n}", sent="2026-01-01T00:00:00+09:00")
        for n in range(case["earlier"])
    ]
    language = case["language"]

    alert = render_cap(change, there, origin=ORIGIN, language=language, earlier=previous)

    schema.validate(alert.xml)
    root = parse(alert)
    assert CAP_TIME.fullmatch(one(root, "cap:sent"))
    assert datetime.fromisoformat(one(root, "cap:sent")) == case["at"].replace(microsecond=0)
    ended = case["status"] in ENDED
    assert one(root, "cap:msgType") == ("Cancel" if ended else "Update" if previous else "Alert")
    for ring in every(root, ".//cap:polygon"):
        points = ring.split(" ")
        assert points[0] == points[-1] and len(points) >= 4
    if not ended:
        # What the rules say to do arrives as written (bar what XML 1.0 cannot carry at all).
        wanted = [
            (ko if language == "ko" else en).strip() or (en if language == "ko" else ko).strip()
            for ko, en in case["actions"]
        ]
        if any(wanted):
            received = one(root, "cap:info/cap:instruction")
            assert received == _as_xml_carries("\n".join(dict.fromkeys(w for w in wanted if w)))


def _as_xml_carries(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return re.sub("[^\t\n\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]", "\ufffd", text)
