"""A delivery's body in its endpoint's format: a CloudEvent for `json`, a CAP 1.2 alert valid
against the OASIS schema for `cap`, an Alert first and an Update naming it after; an escalation
step's alert is an alert of its own, not the opening's again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import xmlschema

from services.common.auth.hub_key import HubKey
from services.common.contracts import IncidentChange
from services.common.sites.registry import SiteRegistry
from services.escalation.ack_links import AckLinks
from services.escalation.adapters.endpoints_db import EndpointRow
from services.escalation.adapters.incident_change import change_of, read_change
from services.escalation.formats import CapOrigin
from services.escalation.render import Renderer
from services.incidents.ack_token import read_ack
from services.incidents.adapters.messages import STATUS
from services.incidents.domain.model import Status
from tests.unit.test_escalation_render import opened

REPO = Path(__file__).resolve().parents[2]
SCHEMA = xmlschema.XMLSchema(REPO / "tests" / "fixtures" / "cap" / "cap12.xsd")
REGISTRY = SiteRegistry.load([REPO / "sites" / "ulsan-demo.yaml"])
RENDERER = Renderer(CapOrigin(sender="safetyhub@example.org"), lambda: REGISTRY)
NOW = datetime(2026, 5, 4, 3, 0, tzinfo=UTC)


def endpoint(format_: str, language: str = "en") -> EndpointRow:
    return EndpointRow(
        tenant="ulsan-refining",
        id="01J0000000000000000000000E",
        name="",
        url="https://example.org/in",
        format=format_,
        language=language,
        sites=None,
        min_severity="Minor",
        types=None,
        headers={},
        secret="whsec_x",
        previous_secret=None,
        previous_until=None,
        enabled=True,
        disabled_reason="",
        failures=0,
        breaker_until=None,
        created_at=NOW,
        updated_at=NOW,
    )


def decoded(body: bytes) -> dict[str, object]:
    SCHEMA.validate(body.decode("utf-8"))
    out = SCHEMA.to_dict(body.decode("utf-8"))
    assert isinstance(out, dict)
    return out


def test_a_json_endpoint_gets_a_cloudevent_and_keeps_no_cap_reference() -> None:
    change = read_change(opened()[0])
    rendered = RENDERER.render(change, endpoint("json"), "msg_1")
    assert rendered.content_type == "application/cloudevents+json"
    assert msgspec.json.decode(rendered.body)["id"] == "msg_1"
    assert rendered.cap_reference is None


def test_a_cap_endpoint_gets_an_alert_then_an_update_naming_it() -> None:
    change = read_change(opened()[0])
    first = RENDERER.render(change, endpoint("cap", "ko"), "msg_1")
    assert first.content_type == "application/cap+xml" and first.cap_reference is not None
    alert = decoded(first.body)
    assert alert["msgType"] == "Alert" and "references" not in alert
    assert first.cap_reference == f"{alert['sender']},{alert['identifier']},{alert['sent']}"
    # Rendered again (a redelivered message): the same bytes.
    assert RENDERER.render(change, endpoint("cap", "ko"), "msg_1").body == first.body

    # An escalation step re-notifies the incident as its latest change left it: a new alert.
    step = change_of(change.message, change="escalated", at=change.at + timedelta(minutes=5))
    second = RENDERER.render(step, endpoint("cap", "ko"), "msg_2", earlier=[first.cap_reference])
    update = decoded(second.body)
    assert update["msgType"] == "Update" and update["references"] == first.cap_reference
    assert update["identifier"] != alert["identifier"] and update["sent"] > alert["sent"]
    assert change.message.entry.change == "opened"  # the message itself is left as it was


def linked_renderer(public_url: str) -> tuple[Renderer, AckLinks]:
    links = AckLinks(public_url, 3600.0, _key=HubKey("safetyhub-0a1b2c3d", b"k" * 32))
    return Renderer(CapOrigin(sender="safetyhub@example.org"), lambda: REGISTRY, links), links


def test_a_notification_awaiting_acknowledgement_carries_its_signed_link() -> None:
    renderer, _ = linked_renderer("https://hub.example.org/")
    change = read_change(opened()[0])
    event = msgspec.json.decode(renderer.render(change, endpoint("json"), "msg_1").body)
    url = event["data"]["ackUrl"]
    assert url.startswith("https://hub.example.org/v1/ack/")
    claims = read_ack(url.rsplit("/", 1)[1], b"k" * 32, now=change.at.timestamp())
    assert (claims.tenant, claims.site, claims.incident_id) == (
        change.tenant,
        change.site,
        change.incident_id,
    )
    assert (claims.jti, claims.endpoint_id) == ("msg_1", endpoint("json").id)
    assert claims.expires_at == int(change.at.timestamp()) + 3600
    # Rendered again: the same link (the same bytes for a retry or a redelivered change).
    assert (
        renderer.render(change, endpoint("json"), "msg_1").body
        == renderer.render(change, endpoint("json"), "msg_1").body
    )

    # CAP: the link as the parameter safetyhub:ackUrl and as <web>; still valid CAP 1.2.
    alert = decoded(renderer.render(change, endpoint("cap"), "msg_2").body)
    [info] = alert["info"]
    parameters = {p["valueName"]: p["value"] for p in info["parameter"]}
    assert parameters["safetyhub:ackUrl"] == info["web"]
    assert info["web"].startswith("https://hub.example.org/v1/ack/")


def test_no_link_without_a_public_url_or_once_the_incident_is_acknowledged() -> None:
    change = read_change(opened()[0])
    renderer, _ = linked_renderer("")
    assert (
        "ackUrl" not in msgspec.json.decode(renderer.render(change, endpoint("json"), "msg_1").body)["data"]
    )
    renderer, _ = linked_renderer("https://hub.example.org")
    acknowledged = IncidentChange()
    acknowledged.CopyFrom(change.message)
    acknowledged.incident.status = STATUS[Status.ACKNOWLEDGED]
    later = change_of(acknowledged)
    assert "ackUrl" not in msgspec.json.decode(renderer.render(later, endpoint("json"), "msg_3").body)["data"]
    alert = decoded(renderer.render(later, endpoint("cap"), "msg_4").body)
    assert "web" not in alert["info"][0]
