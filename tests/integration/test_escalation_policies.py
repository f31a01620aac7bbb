"""Escalation policies through the running hub: the API (422 for a loop, a step naming no
endpoint, a negative wait; audited), and an incident climbing the steps with real receivers:
repeats and waits, each notification showing the incident as it is now, acknowledgement
stopping the climb, the resolution reaching every endpoint notified, a policy changed mid-climb
applying from the next step."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS

from services.incidents.domain.model import Status
from tests.conftest import RunningHub, eventually
from tests.integration.escalation_hub import (
    admin_key,
    an_incident,
    call,
    create_endpoint,
    escalation_hub,
    publish_change,
)
from tests.integration.webhook_receiver import Receiver, receiving
from tests.openapi import assert_matches


@pytest.fixture
async def hub(nats_url: str, database_url: str) -> AsyncIterator[RunningHub]:
    async with escalation_hub(nats_url, database_url) as running:
        yield running


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def endpoint_for(hub: RunningHub, key: str, receiver: Receiver, **fields: object) -> str:
    # Filters that take nothing: whatever it receives comes from the policy.
    created = await create_endpoint(hub, key, url=receiver.url, types=["intrusion"], **fields)
    receiver.secret = created["secret"]
    return str(created["id"])


async def create_policy(hub: RunningHub, key: str, body: dict[str, Any]) -> dict[str, Any]:
    status, policy = await call(hub, "POST", "/v1/policies", key, body)
    assert status == 201, policy
    assert_matches("Policy", policy)
    return dict(policy)


def kinds(receiver: Receiver) -> list[str]:
    return [r.event["type"].split(".")[3] for r in receiver.received]


async def test_the_policy_api_refuses_loops_empty_steps_and_negative_waits(hub: RunningHub) -> None:
    key = await admin_key(hub)
    room = (await create_endpoint(hub, key, url="https://example.org/room"))["id"]
    refused = [
        ({"steps": []}, "steps"),
        ({"steps": [{"endpoints": [], "waitS": 60}]}, "steps[0].endpoints"),
        ({"steps": [{"endpoints": ["01JD0000000000000000000000"], "waitS": 60}]}, "steps[0].endpoints"),
        ({"steps": [{"endpoints": [room], "waitS": -1}]}, "steps[0].waitS"),
        (
            {"steps": [{"endpoints": [room], "waitS": 1}, {"endpoints": [room], "waitS": 1, "next": 0}]},
            "steps[1].next",
        ),
        ({"steps": [{"endpoints": [room], "waitS": 1}], "minSeverity": "Huge"}, "minSeverity"),
        ({"steps": [{"endpoints": [room], "waitS": 1}], "sites": ["mipo-aromatics"]}, "sites"),
    ]
    for body, field in refused:
        status, problem = await call(hub, "POST", "/v1/policies", key, body)
        assert status == 422, (body, problem)
        assert problem["errors"][0]["field"] == field, (body, problem)
    policy = await create_policy(hub, key, {"name": "all", "steps": [{"endpoints": [room], "waitS": 60}]})
    path = f"/v1/policies/{policy['id']}"
    status, replaced = await call(
        hub, "PUT", path, key, {"steps": [{"endpoints": [room], "waitS": 30, "repeat": 2}]}
    )
    assert status == 200 and replaced["steps"][0] == {
        "endpoints": [room],
        "waitS": 30.0,
        "repeat": 2,
        "next": None,
    }
    status, listed = await call(hub, "GET", "/v1/policies", key)
    assert [p["id"] for p in listed["items"]] == [policy["id"]]
    operator = await admin_key(hub, tenant="mipo-petrochem")
    status, _ = await call(hub, "GET", path, operator)
    assert status == 404
    status, _ = await call(hub, "DELETE", path, key)
    assert status == 204
    audited = await hub.hub.pool.fetch(
        "SELECT action FROM audit_log WHERE target = $1 ORDER BY id", policy["id"]
    )
    assert [r["action"] for r in audited] == ["policy.created", "policy.updated", "policy.deleted"]


async def test_an_unacknowledged_incident_climbs_and_acknowledgement_stops_it(
    hub: RunningHub, nc: NATS
) -> None:
    key = await admin_key(hub)
    async with (
        receiving(Receiver()) as room,
        receiving(Receiver()) as manager,
        receiving(Receiver()) as director,
    ):
        room_id = await endpoint_for(hub, key, room, language="en")
        manager_id = await endpoint_for(hub, key, manager)
        director_id = await endpoint_for(hub, key, director)
        policy = await create_policy(
            hub,
            key,
            {
                "steps": [
                    {"endpoints": [room_id], "waitS": 1, "repeat": 1},
                    {"endpoints": [manager_id], "waitS": 1},
                    {"endpoints": [director_id], "waitS": 60},
                ],
            },
        )
        incident = an_incident()
        started = time.monotonic()
        await publish_change(nc, incident, "opened", Status.OPEN)
        await eventually(lambda: asyncio.sleep(0, room.received), what="the first step")
        assert kinds(room) == ["opened"]
        assert room.received[0].event["escalationstep"] == 0
        # An alarm joins while the room waits: the repeat shows the incident as it is now.
        incident.assignee = "night-shift"
        await publish_change(nc, incident, "joined", Status.OPEN)
        await eventually(lambda: asyncio.sleep(0, len(room.received) == 2), what="the repeat")
        repeat = room.received[1]
        assert repeat.event["type"] == "org.safetyhub.incident.escalated.v1"
        assert repeat.event["data"]["assignee"] == "night-shift" and repeat.event["data"]["version"] == 3
        assert (repeat.event["escalationstep"], repeat.event["escalationround"]) == (0, 1)
        assert 0.8 <= repeat.at - room.received[0].at <= 2.0
        await eventually(lambda: asyncio.sleep(0, manager.received), what="the second step")
        assert manager.received[0].at - started >= 1.8
        # The policy changes while the manager waits: its next step is the new one's.
        status, _ = await call(
            hub,
            "PUT",
            f"/v1/policies/{policy['id']}",
            key,
            {
                "steps": [
                    {"endpoints": [room_id], "waitS": 1},
                    {"endpoints": [manager_id], "waitS": 1},
                    {"endpoints": [room_id, director_id], "waitS": 60},
                ]
            },
        )
        assert status == 200
        await eventually(lambda: asyncio.sleep(0, director.received), what="the third step")
        assert kinds(room)[-1] == "escalated" and len(room.received) == 3  # in the changed step too

        await publish_change(nc, incident, "acknowledged", Status.ACKNOWLEDGED)
        await eventually(lambda: asyncio.sleep(0, "acknowledged" in kinds(director)), what="the ack")
        counts = (len(room.received), len(manager.received), len(director.received))
        await asyncio.sleep(1.5)  # past the waits the climb would have had: nothing more comes
        await publish_change(nc, incident, "resolved", Status.RESOLVED)
        for receiver in (room, manager, director):
            await eventually(
                lambda r=receiver: asyncio.sleep(0, "resolved" in kinds(r)), what="the resolution"
            )
        assert (len(room.received), len(manager.received), len(director.received)) == (
            counts[0] + 1,
            counts[1] + 1,
            counts[2] + 1,
        )
        for receiver in (room, manager, director):
            assert set(receiver.by_id.values()) == {1} and receiver.unverified == 0
    climb = await hub.hub.pool.fetchrow("SELECT due_at, stopped FROM escalation_climbs")
    assert climb["due_at"] is None and climb["stopped"] == "acknowledged"
