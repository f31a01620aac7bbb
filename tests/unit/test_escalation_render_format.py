"""A delivery's body in its endpoint's format: a CloudEvent for `json`, a CAP 1.2 alert valid
against the OASIS schema for `cap`, an Alert first and an Update naming it after; an escalation
step's alert is an alert of its own, not the opening's again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import xmlschema

from services.common.sites.registry import SiteRegistry
from services.escalation.adapters.endpoints_db import EndpointRow
from services.escalation.adapters.incident_change import change_of, read_change
from services.escalation.formats import CapOrigin
from services.escalation.render import Renderer
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
