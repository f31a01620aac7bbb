"""Deliveries through the running hub and real receivers: incident changes on INCIDENTS become
signed webhooks (verified with `standardwebhooks`), once per webhook-id; failures are retried on
the schedule, 410 disables the endpoint, 429 waits its Retry-After, a hanging endpoint delays no
other, an exhausted delivery is dead and redeliverable by API."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NATS

from services.common.bus.deadletter import REASON_HEADER
from services.escalation.engine import DeliveryEngine
from services.incidents.domain.model import IncidentType, Severity, Status
from tests.conftest import RunningHub, eventually
from tests.integration.escalation_hub import (
    FAST,
    admin_key,
    an_incident,
    call,
    consumed,
    create_endpoint,
    deliveries,
    escalation_hub,
    faster,
    publish_change,
    publish_same,
    settled,
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
    created = await create_endpoint(hub, key, url=receiver.url, **fields)
    receiver.secret = created["secret"]
    return str(created["id"])


async def test_an_incident_s_changes_reach_the_endpoints_that_take_it_signed_once_each(
    hub: RunningHub, nc: NATS
) -> None:
    key = await admin_key(hub)
    async with (
        receiving(Receiver()) as room,
        receiving(Receiver()) as fires_only,
        receiving(Receiver()) as east_only,
    ):
        await endpoint_for(hub, key, room, language="ko", minSeverity="Severe")
        await endpoint_for(hub, key, fires_only, types=["fire"])
        await endpoint_for(hub, key, east_only, sites=["ulsan-refinery-east"])
        incident = an_incident(severity=Severity.EXTREME)
        started = time.monotonic()
        await publish_change(nc, incident, "opened", Status.OPEN)
        await eventually(lambda: asyncio.sleep(0, room.events("opened")), what="the opening delivered")
        assert time.monotonic() - started < 2.0
        [event] = room.events("opened")
        assert event["type"] == "org.safetyhub.incident.opened.v1"
        assert event["data"]["id"] == incident.id and event["data"]["status"] == "open"
        assert event["data"]["language"] == "ko" and event["data"]["title"].startswith("가스 누출")

        # An alarm joining is not delivered; acknowledging and resolving are, each as the
        # incident then is.
        await publish_change(nc, incident, "joined", Status.OPEN)
        incident.assignee = "kim"
        await publish_change(nc, incident, "acknowledged", Status.ACKNOWLEDGED)
        incident.severity = Severity.MODERATE  # below the endpoint's minimum now
        incident.resolution_code = "leak_isolated"
        await publish_change(nc, incident, "resolved", Status.RESOLVED)

        await eventually(lambda: asyncio.sleep(0, room.events("resolved")), what="the resolution delivered")
        assert [e["type"].split(".")[3] for e in room.events()] == ["opened", "acknowledged", "resolved"]
        acked, resolved = room.events("acknowledged")[0], room.events("resolved")[0]
        assert acked["data"]["assignee"] == "kim" and acked["data"]["status"] == "acknowledged"
        # Heard of the opening: hears of the end, whatever its filter says now.
        assert resolved["data"]["status"] == "resolved" and resolved["data"]["severity"] == "Moderate"
        assert resolved["data"]["resolution"] == {"code": "leak_isolated", "note": ""}
        assert set(room.by_id.values()) == {1} and room.unverified == 0
        for received in room.received:
            assert received.headers["content-type"] == "application/cloudevents+json"
            assert received.event["id"] == received.webhook_id
        assert fires_only.received == [] and east_only.received == []

    listed = await settled(hub, key, f"?incident={incident.id}", count=3)
    for delivery in listed:
        assert_matches("Delivery", delivery)
    assert {(d["change"], d["status"], d["attempts"]) for d in listed} == {
        ("opened", "delivered", 1),
        ("acknowledged", "delivered", 1),
        ("resolved", "delivered", 1),
    }


async def test_a_change_delivered_again_on_the_bus_is_sent_once(hub: RunningHub, nc: NATS) -> None:
    key = await admin_key(hub)
    async with receiving(Receiver()) as receiver:
        await endpoint_for(hub, key, receiver)
        incident = an_incident()
        entry = await publish_change(nc, incident, "opened", Status.OPEN, msg_id="first-copy")
        await eventually(lambda: asyncio.sleep(0, receiver.received), what="the first copy")
        # The same change again under another message id (JetStream keeps both).
        await publish_same(nc, incident, entry, msg_id="second-copy")
        later = await publish_change(nc, an_incident(), "opened", Status.OPEN)
        await eventually(lambda: asyncio.sleep(0, len(receiver.received) >= 2), what="a later change")
        assert later.incident_id in {r.event["subject"] for r in receiver.received}
        assert len(receiver.received) == 2 and set(receiver.by_id.values()) == {1}


async def test_failures_are_retried_with_the_same_webhook_id_until_delivered(
    hub: RunningHub, nc: NATS
) -> None:
    key = await admin_key(hub)
    async with receiving(Receiver(script=[500, "close", "garbage"])) as receiver:
        await endpoint_for(hub, key, receiver)
        await publish_change(nc, an_incident(), "opened", Status.OPEN)
        await eventually(lambda: asyncio.sleep(0, receiver.received), what="the fourth attempt")
        ids = {webhook_id for webhook_id, _, _ in receiver.attempts}
        assert len(ids) == 1 and len(receiver.attempts) == 4
        times = [at for _, at, _ in receiver.attempts]
        assert all(b - a >= 0.3 * 0.9 - 0.05 for a, b in itertools.pairwise(times))
    [delivery] = await settled(hub, key)
    assert delivery["status"] == "delivered" and delivery["attempts"] == 4


async def test_410_disables_the_endpoint_and_its_delivery_is_dead(hub: RunningHub, nc: NATS) -> None:
    key = await admin_key(hub)
    async with receiving(Receiver(then=410)) as receiver:
        endpoint = await endpoint_for(hub, key, receiver)
        await publish_change(nc, an_incident(), "opened", Status.OPEN)

        async def dead() -> list[dict[str, object]]:
            return await deliveries(hub, key, "?status=dead")

        [delivery] = await eventually(dead, what="the delivery dead")
        assert delivery["lastStatus"] == 410 and "disabled" in str(delivery["lastError"])
        assert len(receiver.attempts) == 1
        status, shown = await call(hub, "GET", f"/v1/endpoints/{endpoint}", key)
        assert shown["enabled"] is False and "410" in shown["disabledReason"]
        # A disabled endpoint gets nothing new; redelivering to it is refused until enabled.
        await publish_change(nc, an_incident(), "opened", Status.OPEN)
        await consumed(nc)  # decided on while disabled, however slow the machine
        status, problem = await call(hub, "POST", f"/v1/deliveries/{delivery['id']}/redeliver", key)
        assert status == 409 and "disabled" in problem["detail"]
        receiver.then = 204
        status, _ = await call(hub, "PATCH", f"/v1/endpoints/{endpoint}", key, {"enabled": True})
        assert status == 200
        status, again = await call(hub, "POST", f"/v1/deliveries/{delivery['id']}/redeliver", key)
        assert status == 200 and again["status"] == "pending"
        await eventually(lambda: asyncio.sleep(0, receiver.received), what="the redelivery")
        assert [r.webhook_id for r in receiver.received] == [delivery["id"]]
    assert len(await deliveries(hub, key)) == 1  # nothing was queued while it was disabled


async def test_429_waits_for_its_retry_after(hub: RunningHub, nc: NATS) -> None:
    key = await admin_key(hub)
    async with receiving(Receiver(script=[429], retry_after="2")) as receiver:
        await endpoint_for(hub, key, receiver)
        await publish_change(nc, an_incident(), "opened", Status.OPEN)
        await eventually(lambda: asyncio.sleep(0, receiver.received), what="the attempt after Retry-After")
        (_, first, _), (_, second, _) = receiver.attempts
        assert second - first >= 1.9  # not the schedule's 0.3 s


async def test_a_hanging_endpoint_delays_no_other_and_ends_dead_then_redelivered(
    hub: RunningHub, nc: NATS
) -> None:
    key = await admin_key(hub)
    async with (
        receiving(Receiver(then="hang")) as hanging,
        receiving(Receiver()) as healthy,
    ):
        await endpoint_for(hub, key, hanging)
        await endpoint_for(hub, key, healthy)
        incidents = [an_incident() for _ in range(20)]
        started = time.monotonic()
        for incident in incidents:
            await publish_change(nc, incident, "opened", Status.OPEN)
        await eventually(lambda: asyncio.sleep(0, len(healthy.received) == 20), what="every healthy delivery")
        # Twenty deliveries to the hanging endpoint take its slots for a second each; the healthy
        # one's arrive meanwhile, not after them.
        assert max(r.at for r in healthy.received) - started < 2.0

        async def dead() -> list[dict[str, object]]:
            found = await deliveries(hub, key, "?status=dead")
            return found if len(found) == 20 else []

        dead_ones = await eventually(dead, timeout=60, what="the hanging endpoint's deliveries dead")
        assert all("no answer within the timeout" in str(d["lastError"]) for d in dead_ones)
        assert all(d["attempts"] == 4 for d in dead_ones)  # the first and three retries
        hanging.then = 204
        hanging.release()
        redelivered = dead_ones[0]
        status, _ = await call(hub, "POST", f"/v1/deliveries/{redelivered['id']}/redeliver", key)
        assert status == 200
        await eventually(lambda: asyncio.sleep(0, hanging.received), what="the redelivery")
        assert [r.webhook_id for r in hanging.received] == [redelivered["id"]]
    audited = await hub.hub.pool.fetch("SELECT action FROM audit_log WHERE target = $1", redelivered["id"])
    assert [r["action"] for r in audited] == ["delivery.redelivered"]


async def test_the_deliveries_list_filters_and_refuses_what_it_does_not_know(
    hub: RunningHub, nc: NATS
) -> None:
    key = await admin_key(hub)
    async with receiving(Receiver()) as one, receiving(Receiver()) as two:
        first = await endpoint_for(hub, key, one)
        await endpoint_for(hub, key, two)
        incident = an_incident(type_=IncidentType.FIRE)
        await publish_change(nc, incident, "opened", Status.OPEN)
        await eventually(lambda: asyncio.sleep(0, one.received and two.received), what="both")
    assert len(await settled(hub, key, f"?incident={incident.id}", count=2)) == 2
    [mine] = await deliveries(hub, key, f"?endpoint={first}&status=delivered")
    assert mine["endpoint"] == first
    assert await deliveries(hub, key, "?status=dead") == []
    page = await deliveries(hub, key, "?limit=1")
    assert len(page) == 1
    for query, field in (("?status=lost", "status"), ("?endpoint=x", "endpoint"), ("?colour=red", "colour")):
        status, problem = await call(hub, "GET", "/v1/deliveries" + query, key)
        assert status == 400 and problem["errors"][0]["field"] == field
    mipo = await admin_key(hub, tenant="mipo-petrochem")
    assert await deliveries(hub, mipo) == []
    status, _ = await call(hub, "POST", f"/v1/deliveries/{mine['id']}/redeliver", mipo)
    assert status == 404
    status, problem = await call(hub, "POST", f"/v1/deliveries/{mine['id']}/redeliver", key)
    assert status == 409 and problem["deliveryStatus"] == "delivered"


async def test_three_workers_at_once_send_each_delivery_once(hub: RunningHub, nc: NATS) -> None:
    key = await admin_key(hub)
    # Two more engines on the same database beside the hub's own, as `--workers 3` or three
    # replicas run them; slow receivers keep each engine's slots busy so all three claim.
    engines = [DeliveryEngine(hub.hub.pool, FAST) for _ in range(2)]
    for engine in engines:
        await engine.start()
    try:
        async with receiving(Receiver(delay_s=0.05)) as one, receiving(Receiver(delay_s=0.05)) as two:
            await endpoint_for(hub, key, one)
            await endpoint_for(hub, key, two)
            for _ in range(60):
                await publish_change(nc, an_incident(), "opened", Status.OPEN)
            await eventually(
                lambda: asyncio.sleep(0, len(one.received) + len(two.received) >= 120),
                timeout=30,
                what="120 deliveries",
            )
            await settled(hub, key, "?limit=500", count=120)
            for receiver in (one, two):
                assert len(receiver.by_id) == 60 and set(receiver.by_id.values()) == {1}
                assert len(receiver.attempts) == 60  # not one attempt twice
    finally:
        for engine in engines:
            await engine.stop()
    attempted_once = await hub.hub.pool.fetchval(
        "SELECT count(*) FROM escalation_deliveries WHERE attempts = 1"
    )
    assert attempted_once == 120


async def test_during_a_rotation_s_overlap_a_receiver_with_either_secret_verifies(
    hub: RunningHub, nc: NATS
) -> None:
    key = await admin_key(hub)
    async with receiving(Receiver()) as receiver:
        endpoint = await endpoint_for(hub, key, receiver)
        old = receiver.secret
        status, rotated = await call(
            hub, "POST", f"/v1/endpoints/{endpoint}/rotate-secret", key, {"overlapS": 600}
        )
        assert status == 200
        # The receiver has not switched yet: the old secret's signature is still there.
        await publish_change(nc, an_incident(), "opened", Status.OPEN)
        await eventually(lambda: asyncio.sleep(0, receiver.received), what="a delivery during the overlap")
        assert receiver.unverified == 0
        assert len(receiver.received[0].headers["webhook-signature"].split(" ")) == 2
        # It switches; a rotation without overlap leaves only the newest secret signing.
        status, newest = await call(
            hub, "POST", f"/v1/endpoints/{endpoint}/rotate-secret", key, {"overlapS": 0}
        )
        assert status == 200 and newest["secret"] not in (old, rotated["secret"])
        receiver.secret = newest["secret"]
        await publish_change(nc, an_incident(), "opened", Status.OPEN)
        await eventually(lambda: asyncio.sleep(0, len(receiver.received) == 2), what="a delivery after it")
        assert receiver.unverified == 0
        assert len(receiver.received[1].headers["webhook-signature"].split(" ")) == 1


async def test_failures_in_a_row_open_the_breaker_and_an_answer_closes_it(
    nats_url: str, database_url: str
) -> None:
    config = faster(breaker_failures=2, breaker_cooldown_s=2.0, retry_schedule_s=[0.1] * 20)
    async with escalation_hub(nats_url, database_url, config) as hub:
        client = await nats.connect(nats_url)
        key = await admin_key(hub)
        try:
            async with receiving(Receiver(then=500)) as receiver:
                endpoint = await endpoint_for(hub, key, receiver)
                await publish_change(client, an_incident(), "opened", Status.OPEN)
                await eventually(lambda: asyncio.sleep(0, len(receiver.attempts) >= 2), what="two failures")

                async def breaker_open() -> dict[str, object] | None:
                    # The receiver answers before the hub records the answer: read until it has.
                    status, shown = await call(hub, "GET", f"/v1/endpoints/{endpoint}", key)
                    assert status == 200
                    return dict(shown) if shown["breakerOpenUntil"] is not None else None

                await eventually(breaker_open, what="the breaker open")
                receiver.then = 204
                await eventually(
                    lambda: asyncio.sleep(0, receiver.received), what="the attempt after the cooldown"
                )
                times = [at for _, at, _ in receiver.attempts]
                # From the second failure on, the breaker held each attempt back for its cooldown
                # (a slow machine may see a half-open probe fail before the answer turned 2xx).
                assert len(times) >= 3
                assert all(b - a >= 1.8 for a, b in itertools.pairwise(times[1:]))
                await settled(hub, key)
                status, shown = await call(hub, "GET", f"/v1/endpoints/{endpoint}", key)
                assert status == 200 and shown["breakerOpenUntil"] is None and shown["enabled"] is True
        finally:
            await client.close()


async def test_a_message_that_is_no_incident_change_is_dead_lettered_and_delivery_goes_on(
    hub: RunningHub, nc: NATS
) -> None:
    key = await admin_key(hub)
    async with receiving(Receiver()) as receiver:
        await endpoint_for(hub, key, receiver)
        js = nc.jetstream()
        await js.publish("incident.ulsan-refining.ulsan-refinery.01JD0000000000000000000000", b"\xff garbage")
        await publish_change(nc, an_incident(), "opened", Status.OPEN)
        await eventually(lambda: asyncio.sleep(0, receiver.received), what="the valid change delivered")
    sub = await js.pull_subscribe(
        "deadletter.escalation.>", durable="escalation-test-dlq", stream="DEADLETTER"
    )
    [dead] = await sub.fetch(1, timeout=5)
    assert dead.data == b"\xff garbage"
    assert dead.headers is not None and "IncidentChange" in dead.headers[REASON_HEADER]
    assert len(await deliveries(hub, key)) == 1
