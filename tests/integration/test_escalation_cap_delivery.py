"""CAP endpoints through the running hub and real receivers: an incident's opening, acknowledgement
and resolution arrive as a CAP 1.2 Alert, Update and Cancel, each signed (verified with
`standardwebhooks`), valid against the OASIS `cap12.xsd`, in the endpoint's language, each
referencing the alerts sent before it to that endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
import xmlschema
from nats.aio.client import Client as NATS

from services.escalation.formats import CapOrigin
from services.incidents.domain.model import Severity, Status
from tests.conftest import RunningHub, eventually
from tests.integration.escalation_hub import (
    admin_key,
    an_incident,
    call,
    create_endpoint,
    escalation_hub,
    faster,
    publish_change,
    settled,
)
from tests.integration.webhook_receiver import Receiver, receiving

REPO = Path(__file__).resolve().parents[2]
CAP_XSD = REPO / "tests" / "fixtures" / "cap" / "cap12.xsd"
NS = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
SENDER = "safetyhub@ulsan-refinery.example.org"


@pytest.fixture
async def hub(nats_url: str, database_url: str) -> AsyncIterator[RunningHub]:
    config = faster(
        cap=CapOrigin(sender=SENDER, name="Ulsan control room", web="https://hub.example.org/i/{incident_id}")
    )
    async with escalation_hub(nats_url, database_url, config) as running:
        yield running


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


def alert(schema: xmlschema.XMLSchema, body: bytes) -> dict[str, Any]:
    """The alert's fields, after validating it against the CAP 1.2 schema."""
    schema.validate(body.decode("utf-8"))
    decoded = schema.to_dict(body.decode("utf-8"))
    assert isinstance(decoded, dict)
    return decoded


async def test_an_incident_reaches_a_cap_endpoint_as_alert_update_and_cancel_referencing_each_other(
    hub: RunningHub, nc: NATS
) -> None:
    schema = xmlschema.XMLSchema(CAP_XSD)
    key = await admin_key(hub)
    async with receiving(Receiver()) as korean, receiving(Receiver()) as english:
        for receiver, language in ((korean, "ko"), (english, "en")):
            created = await create_endpoint(hub, key, url=receiver.url, format="cap", language=language)
            assert created["format"] == "cap"
            receiver.secret = created["secret"]
        incident = an_incident(severity=Severity.EXTREME)
        await publish_change(nc, incident, "opened", Status.OPEN)
        incident.assignee = "kim"
        await publish_change(nc, incident, "acknowledged", Status.ACKNOWLEDGED)
        incident.resolution_code = "leak_isolated"
        await publish_change(nc, incident, "resolved", Status.RESOLVED)

        for receiver in (korean, english):
            await eventually(
                lambda r=receiver: asyncio.sleep(0, len(r.received) == 3 or None), what="three alerts"
            )
        for receiver, tag in ((korean, "ko-KR"), (english, "en-US")):
            assert receiver.unverified == 0 and set(receiver.by_id.values()) == {1}
            alerts = [alert(schema, r.body) for r in receiver.received]
            for r in receiver.received:
                assert r.headers["content-type"] == "application/cap+xml"
            assert [a["msgType"] for a in alerts] == ["Alert", "Update", "Cancel"]
            assert {a["sender"] for a in alerts} == {SENDER}
            assert {a["incidents"] for a in alerts} == {incident.id}
            assert {a["info"][0]["language"] for a in alerts} == {tag}
            assert alerts[0]["info"][0]["web"] == f"https://hub.example.org/i/{incident.id}"
            names = [f"{a['sender']},{a['identifier']},{a['sent']}" for a in alerts]
            assert len(set(names)) == 3
            # Each later alert names every earlier one sent to this endpoint, oldest first.
            assert "references" not in alerts[0]
            assert alerts[1]["references"] == names[0]
            assert alerts[2]["references"] == f"{names[0]} {names[1]}"
        # One language's alerts are not the other's: each endpoint's chain is its own.
        korean_ids = {alert(schema, r.body)["identifier"] for r in korean.received}
        english_ids = {alert(schema, r.body)["identifier"] for r in english.received}
        assert korean_ids.isdisjoint(english_ids)
        assert "가스" in korean.received[0].body.decode("utf-8")

    listed = await settled(hub, key, f"?incident={incident.id}", count=6)
    assert {d["status"] for d in listed} == {"delivered"}


async def test_an_escalation_step_to_a_cap_endpoint_is_an_update_and_the_cancel_names_every_alert(
    hub: RunningHub, nc: NATS
) -> None:
    schema = xmlschema.XMLSchema(CAP_XSD)
    key = await admin_key(hub)
    async with receiving(Receiver()) as room:
        created = await create_endpoint(hub, key, url=room.url, format="cap", language="en")
        room.secret = created["secret"]
        status, policy = await call(
            hub,
            "POST",
            "/v1/policies",
            key,
            {"steps": [{"endpoints": [created["id"]], "waitS": 1, "repeat": 1}]},
        )
        assert status == 201, policy
        incident = an_incident()
        await publish_change(nc, incident, "opened", Status.OPEN)
        await eventually(lambda: asyncio.sleep(0, len(room.received) == 2 or None), what="the step")
        incident.resolution_code = "leak_isolated"
        await publish_change(nc, incident, "resolved", Status.RESOLVED)
        await eventually(lambda: asyncio.sleep(0, len(room.received) == 3 or None), what="the end")

        alerts = [alert(schema, r.body) for r in room.received]
        assert [a["msgType"] for a in alerts] == ["Alert", "Update", "Cancel"]
        names = [f"{a['sender']},{a['identifier']},{a['sent']}" for a in alerts]
        assert len(set(names)) == 3  # the step's alert is one of its own, not the opening's again
        assert alerts[1]["references"] == names[0]
        assert alerts[2]["references"] == f"{names[0]} {names[1]}"
        assert room.unverified == 0 and set(room.by_id.values()) == {1}
