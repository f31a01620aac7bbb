"""The signed one-time acknowledgement link through the running hub: a gas release opened from
readings posted over HTTP climbs a policy; the first step's webhook (and its CAP twin) carries the
link; following it (GET) changes nothing; forged, expired and another tenant's tokens are refused;
the button (POST) acknowledges the incident as `link:<endpoint>`, audited, and the climb stops
(the next step never comes); two presses at once acknowledge once, and every later use is 410
saying who used it."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import xmlschema

from services.common.auth.hub_key import hub_key
from services.common.auth.keys import create_key
from services.common.settings import HttpConfig
from services.hub.bootstrap import Endpoints, Hub
from services.incidents.ack_token import AckClaims, sign_ack
from tests.conftest import REPO, RunningHub, eventually, hub_config
from tests.integration.escalation_hub import FAST, admin_key, call, create_endpoint
from tests.integration.webhook_receiver import Received, Receiver, receiving

TENANT = "ulsan-refining"
SITE = "ulsan-refinery"
# Where people reach the hub; the test's own hub listens on a port picked at start, so the links'
# paths are followed on it.
PUBLIC = "https://hub.example.org/safety"
CAP_XSD = REPO / "tests" / "fixtures" / "cap" / "cap12.xsd"
FIRST_WAIT_S = 5.0


@pytest.fixture
async def hub(nats_url: str, database_url: str) -> AsyncIterator[RunningHub]:
    config = hub_config(escalation=FAST, http=HttpConfig(port=0, public_url=PUBLIC))
    running = Hub(config, REPO, Endpoints(nats_url, database_url))
    await running.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield RunningHub(running, running.http_url, {}, session)
    finally:
        await running.stop()


async def open_gas_release(hub: RunningHub) -> str:
    """An incident opened the real way: an H2S reading over the ingest API."""
    gateway = await create_key(hub.hub.pool, tenant=TENANT, role="gateway")
    reading = {
        "site": SITE,
        "device": "gd-fcc2-203",
        "kind": "gas.h2s",
        "unit": "ppm",
        "value": 25.0,
        "time": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "id": f"gd-fcc2-203-{uuid.uuid4().hex[:8]}",
    }
    async with hub.session.post(
        hub.url + "/v1/observations", json=[reading], headers={"Authorization": f"Bearer {gateway}"}
    ) as response:
        assert response.status == 202
    viewer = await admin_key(hub)

    async def listed() -> str | None:
        status, body = await call(hub, "GET", "/v1/incidents?type=gas_release&status=open", viewer)
        assert status == 200, body
        return str(body["items"][0]["id"]) if body["items"] else None

    return await eventually(listed, what="the gas release opened")


def on_hub(hub: RunningHub, url: str) -> str:
    assert url.startswith(PUBLIC + "/v1/ack/"), url
    return hub.url + url[len(PUBLIC) :]


BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


async def follow(hub: RunningHub, method: str, url: str, **headers: str) -> tuple[int, str, dict[str, str]]:
    """The link followed as a browser does (unless `headers` say otherwise)."""
    headers.setdefault("Accept", BROWSER)
    async with hub.session.request(method, url, headers=headers) as response:
        return response.status, await response.text(), dict(response.headers)


async def incident(hub: RunningHub, key: str, incident_id: str) -> dict[str, Any]:
    """The incident with its timeline (`incident`, `timeline`)."""
    status, body = await call(hub, "GET", f"/v1/incidents/{incident_id}", key)
    assert status == 200, body
    return dict(body)


def about(receiver: Receiver, incident_id: str) -> list[Received]:
    """What `receiver` got about this incident (the readings may open others, such as a stale
    detector's, which the policy pages too)."""
    found = []
    for r in receiver.received:
        if r.event:
            subject = r.event.get("subject") or r.event.get("data", {}).get("id")
        else:
            subject = incident_id if f"<incidents>{incident_id}</incidents>" in r.body.decode() else None
        if subject == incident_id:
            found.append(r)
    return found


async def page_by_policy(
    hub: RunningHub, key: str, room: Receiver, room_cap: Receiver, manager: Receiver
) -> dict[str, str]:
    """The room (JSON and CAP) paged first, the manager after FIRST_WAIT_S unless acknowledged."""
    ids = {}
    for name, receiver, fmt in (
        ("Control room", room, "json"),
        ("Room CAP", room_cap, "cap"),
        ("Manager", manager, "json"),
    ):
        # Filters that take nothing: whatever they receive comes from the policy.
        created = await create_endpoint(
            hub, key, url=receiver.url, types=["intrusion"], name=name, format=fmt, language="en"
        )
        receiver.secret = created["secret"]
        ids[name] = str(created["id"])
    steps = [
        {"endpoints": [ids["Control room"], ids["Room CAP"]], "waitS": FIRST_WAIT_S},
        {"endpoints": [ids["Manager"]], "waitS": 60},
    ]
    status, _ = await call(hub, "POST", "/v1/policies", key, {"steps": steps})
    assert status == 201
    return ids


async def refused_alike(hub: RunningHub, key: str, link: str, incident_id: str, endpoint_id: str) -> None:
    """Expired, another tenant's, tampered: 404 alike, saying nothing of why; nothing changes."""
    signing = await hub_key(hub.hub.pool)
    now = int(time.time())
    expired = AckClaims(
        tenant=TENANT,
        site=SITE,
        incident_id=incident_id,
        endpoint_id=endpoint_id,
        jti="msg_forged",
        name="",
        issued_at=now - 7200,
        expires_at=now - 3600,
    )
    other_tenant = dataclasses.replace(expired, tenant="mipo-petrochem", expires_at=now + 3600)
    tampered = link[:-4] + ("AAAA" if not link.endswith("AAAA") else "BBBB")
    for bad in (
        f"{hub.url}/v1/ack/{sign_ack(signing, expired)}",
        f"{hub.url}/v1/ack/{sign_ack(signing, other_tenant)}",
        tampered,
    ):
        for method in ("GET", "POST"):
            status, page, _ = await follow(hub, method, bad)
            assert status == 404 and "not valid" in page, page
    status, problem, headers = await follow(hub, "POST", tampered, Accept="*/*")
    assert status == 404 and headers["Content-Type"].startswith("application/problem+json")
    assert "/v1/ack/{token}" in problem and tampered.rsplit("/", 1)[1] not in problem
    assert (await incident(hub, key, incident_id))["incident"]["status"] == "open"


async def test_a_notifications_link_acknowledges_once_and_stops_the_climb(hub: RunningHub) -> None:
    key = await admin_key(hub)
    async with (
        receiving(Receiver()) as room,
        receiving(Receiver()) as room_cap,
        receiving(Receiver()) as manager,
    ):
        ids = await page_by_policy(hub, key, room, room_cap, manager)
        incident_id = await open_gas_release(hub)
        await eventually(
            lambda: asyncio.sleep(0, about(room, incident_id) and about(room_cap, incident_id)),
            what="the first step",
        )
        first_at = about(room, incident_id)[0].at
        data = about(room, incident_id)[0].event["data"]
        assert data["id"] == incident_id and data["status"] == "open"
        link = on_hub(hub, data["ackUrl"])

        # The CAP twin carries its own link, as <web> and as a parameter; still valid CAP 1.2.
        xml = about(room_cap, incident_id)[0].body.decode()
        xmlschema.XMLSchema(CAP_XSD).validate(xml)
        assert "<web>" + PUBLIC + "/v1/ack/" in xml and "safetyhub:ackUrl" in xml

        # Following the link shows the incident and a button; nothing changes.
        status, page, headers = await follow(hub, "GET", link)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert "Acknowledge" in page and '<form method="post">' in page and "Extreme" in page
        assert headers["Cache-Control"] == "no-store" and headers["Referrer-Policy"] == "no-referrer"
        assert (await incident(hub, key, incident_id))["incident"]["status"] == "open"

        await refused_alike(hub, key, link, incident_id, ids["Control room"])

        # The button: acknowledged as the link's endpoint, in the timeline and the audit trail.
        # Two presses at once (a double click, two people): one acknowledges, the other is told.
        answers = sorted(await asyncio.gather(follow(hub, "POST", link), follow(hub, "POST", link)))
        assert [status for status, _, _ in answers] == [200, 410], answers
        assert "link:Control room" in answers[0][1] and "used by link:Control room" in answers[1][1]
        assert time.monotonic() - first_at < FIRST_WAIT_S, "acknowledged only after the next step was due"
        acknowledged = await incident(hub, key, incident_id)
        assert acknowledged["incident"]["status"] == "acknowledged"
        assert acknowledged["incident"]["assignee"] == "link:Control room"
        assert acknowledged["timeline"][-1]["actor"] == "link:Control room"
        audited = await hub.hub.pool.fetchrow(
            "SELECT actor, actor_kind, tenant FROM audit_log WHERE target = $1 AND action = $2",
            incident_id,
            "incident.acknowledged",
        )
        assert tuple(audited) == ("link:Control room", "link", TENANT)

        # A later use: 410, saying who used it and when; the page of a GET says so too.
        status, page, _ = await follow(hub, "POST", link)
        assert status == 410 and "link:Control room" in page
        status, problem, _ = await follow(hub, "POST", link, Accept="application/problem+json")
        assert status == 410 and '"usedBy":"link:Control room"' in problem
        status, page, _ = await follow(hub, "GET", link)
        assert status == 410 and "used by link:Control room" in page
        # Another notification's link of the same incident: told plainly, nothing consumed.
        cap_link = on_hub(hub, xml.split("<web>", 1)[1].split("</web>", 1)[0].replace("&amp;", "&"))
        status, page, _ = await follow(hub, "POST", cap_link)
        assert status == 200 and "already" in page and "link:Control room" in page
        assert await hub.hub.pool.fetchval("SELECT count(*) FROM incident_ack_links") == 1

        # The climb stops: the acknowledgement reaches the room (with no link), the manager never.
        await eventually(
            lambda: asyncio.sleep(
                0, any(r.event["type"].endswith(".acknowledged.v1") for r in about(room, incident_id))
            ),
            what="the acknowledgement notified",
        )
        notice = next(
            r.event for r in about(room, incident_id) if r.event["type"].endswith(".acknowledged.v1")
        )
        assert "ackUrl" not in notice["data"]
        stopped = await eventually(
            lambda: hub.hub.pool.fetchval(
                "SELECT stopped FROM escalation_climbs WHERE incident_id = $1", incident_id
            ),
            what="the climb stopped",
        )
        assert stopped == "acknowledged"
        await asyncio.sleep(max(0.0, first_at + FIRST_WAIT_S + 1.5 - time.monotonic()))
        assert about(manager, incident_id) == []
