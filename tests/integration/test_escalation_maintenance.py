"""Maintenance windows through the running hub, with real receivers: a window created by the API
mutes a non-safety incident's opening (recorded as a `muted` delivery), a safety incident still
goes through, the resolution is still delivered, the held opening goes out when the window ends,
and the reminder before the end arrives once, signed. The API: 422 naming the field, 404 across
tenants, filters, audit rows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS

from services.alarms.domain.model import AlarmClass
from services.escalation.maintenance_timer import MaintenanceTimer
from services.incidents.domain.incident import Incident
from services.incidents.domain.model import IncidentType, Severity, Status
from tests.conftest import RunningHub, eventually
from tests.integration.escalation_hub import (
    SITE,
    admin_key,
    an_incident,
    call,
    consumed,
    create_endpoint,
    deliveries,
    escalation_hub,
    publish_change,
    settled,
)
from tests.integration.webhook_receiver import Receiver, receiving
from tests.openapi import assert_matches

WINDOWS = "/v1/maintenance-windows"


@pytest.fixture
async def hub(nats_url: str, database_url: str) -> AsyncIterator[RunningHub]:
    async with escalation_hub(nats_url, database_url) as running:
        yield running


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


def a_fault(zone: str = "fcc-2") -> Incident:
    """A non-safety incident: a compressor's equipment fault in `zone`."""
    incident = an_incident(type_=IncidentType.EQUIPMENT_FAULT, severity=Severity.MODERATE)
    incident.members = [
        msgspec.structs.replace(m, alarm_class=AlarmClass.EQUIPMENT, zone=zone, kind="vibration")
        for m in incident.members
    ]
    return incident


def once(start: datetime, end: datetime) -> dict[str, str]:
    return {"kind": "once", "start": start.isoformat(), "end": end.isoformat()}


async def create_window(hub: RunningHub, key: str, body: dict[str, Any]) -> dict[str, Any]:
    status, window = await call(hub, "POST", WINDOWS, key, body)
    assert status == 201, window
    assert_matches("MaintenanceWindow", window)
    return dict(window)


async def heard(receiver: Receiver, change: str) -> list[dict[str, Any]]:
    """What the receiver has been sent of one kind (`opened`, `resolved`, `ending`), verified."""
    return receiver.events(change)


async def test_a_window_mutes_a_non_safety_incident_but_not_a_safety_one_nor_the_resolution(
    hub: RunningHub, nc: NATS
) -> None:
    key = await admin_key(hub)
    async with receiving(Receiver()) as room:
        room.secret = (await create_endpoint(hub, key, url=room.url, sites=[SITE]))["secret"]
        now = datetime.now(UTC)
        window = await create_window(
            hub,
            key,
            {
                "site": SITE,
                "zone": "fcc-2",
                "schedule": once(now - timedelta(minutes=1), now + timedelta(hours=1)),
                "reason": "FCC-2 compressor overhaul",
                "reminderLeadS": 60,
            },
        )
        assert window["active"] and window["timezone"] == "Asia/Seoul" and window["version"] == 1

        fault = a_fault()
        await publish_change(nc, fault, "opened", Status.OPEN)
        gas = an_incident()  # a gas release, safety-class: never muted
        await publish_change(nc, gas, "opened", Status.OPEN)
        await eventually(lambda: heard(room, "opened"), what="the gas release's opening")
        await consumed(nc)

        held = await deliveries(hub, key, f"?incident={fault.id}")
        assert [(d["change"], d["status"]) for d in held] == [("opened", "muted")]
        assert window["id"] in held[0]["lastError"] and held[0]["nextAttemptAt"] is None
        assert_matches("Delivery", held[0])
        status, listed = await call(hub, "GET", "/v1/deliveries?status=muted", key)
        assert status == 200 and [d["incident"] for d in listed["items"]] == [fault.id]

        await publish_change(nc, fault, "resolved", Status.RESOLVED)
        resolved = await eventually(lambda: heard(room, "resolved"), what="the fault's resolution")
        assert [e["subject"] for e in resolved] == [fault.id]
        assert [e["subject"] for e in room.events("opened")] == [gas.id]
        assert room.unverified == 0


async def test_when_the_window_ends_the_held_opening_goes_out_and_the_reminder_came_once(
    hub: RunningHub, nc: NATS
) -> None:
    key = await admin_key(hub)
    async with receiving(Receiver()) as room, receiving(Receiver()) as elsewhere:
        room.secret = (await create_endpoint(hub, key, url=room.url, sites=[SITE]))["secret"]
        # Another site's endpoint hears of neither the window nor its reminder.
        elsewhere.secret = (
            await create_endpoint(hub, key, url=elsewhere.url, sites=["ulsan-refinery-east"])
        )["secret"]
        now = datetime.now(UTC)
        end = now + timedelta(seconds=4)
        # The whole site, ending within its reminder's lead: the reminder is due at once.
        window = await create_window(
            hub, key, {"site": SITE, "schedule": once(now - timedelta(minutes=5), end), "reminderLeadS": 600}
        )
        # Two more workers pass over the due reminder at the same moment as the hub's own.
        timers = [MaintenanceTimer(hub.hub.pool, poll_interval_s=1.0) for _ in range(2)]
        await asyncio.gather(*(t.run_due() for t in timers))

        reminder = (await eventually(lambda: heard(room, "ending"), what="the reminder"))[0]
        assert reminder["type"] == "org.safetyhub.maintenance.ending.v1"
        assert reminder["subject"] == window["id"]
        assert reminder["data"]["site"] == SITE and reminder["data"]["zone"] is None
        assert abs(datetime.fromisoformat(reminder["data"]["endsAt"]) - end) < timedelta(milliseconds=1)

        fault = a_fault(zone="cdu-1")
        entry = await publish_change(nc, fault, "opened", Status.OPEN)
        await consumed(nc)
        (held,) = await deliveries(hub, key, f"?incident={fault.id}")
        assert held["status"] == "muted"
        assert not room.events("opened")

        # The window ends with the fault open and unacknowledged: its opening goes out then.
        opened = await eventually(lambda: heard(room, "opened"), what="the held opening", timeout=20)
        assert [e["subject"] for e in opened] == [fault.id]
        assert room.received[-1].webhook_id == held["id"]
        assert datetime.now(UTC) >= end
        assert opened[0]["data"]["id"] == fault.id and entry.change == "opened"
        # More passes of every timer after the end: the reminder is not sent again.
        await asyncio.gather(*(t.run_due() for t in timers))
        sent = await deliveries(hub, key, "?status=delivered&status=pending&status=sending")
        endings = [d for d in sent if d["type"] == "org.safetyhub.maintenance.ending.v1"]
        assert len(endings) == 1 and endings[0]["incident"] is None
        assert len(room.events("ending")) == 1 and max(room.by_id.values()) == 1
        assert elsewhere.received == []


async def test_the_api_names_the_wrong_field_hides_other_tenants_windows_and_audits(hub: RunningHub) -> None:
    key = await admin_key(hub)
    now = datetime.now(UTC)
    good = {"site": SITE, "schedule": once(now + timedelta(hours=1), now + timedelta(hours=2))}
    weekly = {"kind": "rrule", "dtstart": "2020-01-04T02:00:00", "duration": "PT4H"}
    refused = [
        ({**good, "schedule": {**weekly, "rrule": "FREQ=WEEKLY;BYDAY=XX"}}, "schedule.rrule"),
        ({**good, "schedule": {**weekly, "rrule": "FREQ=MINUTELY"}}, "schedule.rrule"),
        ({**good, "schedule": {"kind": "cron", "cron": "*/5 * * * *", "duration": "PT1H"}}, "schedule.cron"),
        ({**good, "schedule": once(now, now - timedelta(hours=1))}, "schedule.end"),
        ({**good, "zone": "no-such-zone"}, "zone"),
        ({**good, "site": "mipo-aromatics"}, "site"),  # another tenant's site
        ({**good, "timezone": "Mars/Olympus"}, "timezone"),
        ({**good, "reminderLeadS": 0}, "reminderLeadS"),
        ({**good, "colour": "red"}, "colour"),
    ]
    for body, field in refused:
        status, problem = await call(hub, "POST", WINDOWS, key, body)
        assert status == 422, (body, problem)
        assert problem["errors"][0]["field"] == field, (body, problem)

    later = await create_window(hub, key, {**good, "zone": "fcc-2"})
    running = await create_window(
        hub, key, {"site": SITE, "schedule": {**weekly, "rrule": "FREQ=DAILY", "duration": "PT24H"}}
    )
    path = f"{WINDOWS}/{later['id']}"
    status, replaced = await call(hub, "PUT", path, key, {**good, "zone": "cdu-1", "reason": "moved"})
    assert status == 200 and replaced["zone"] == "cdu-1" and replaced["version"] == 2
    status, listed = await call(hub, "GET", f"{WINDOWS}?site={SITE}", key)
    assert status == 200 and {w["id"] for w in listed["items"]} == {later["id"], running["id"]}
    status, active = await call(hub, "GET", f"{WINDOWS}?active=true", key)
    assert [w["id"] for w in active["items"]] == [running["id"]]
    status, _ = await call(hub, "GET", f"{WINDOWS}?active=maybe", key)
    assert status == 400

    stranger = await admin_key(hub, tenant="mipo-petrochem")
    for method in ("GET", "DELETE"):
        status, _ = await call(hub, method, path, stranger)
        assert status == 404
    status, _ = await call(hub, "PUT", path, stranger, {**good, "site": "mipo-aromatics"})
    assert status == 404
    status, theirs = await call(hub, "GET", WINDOWS, stranger)
    assert theirs["items"] == []

    status, _ = await call(hub, "DELETE", path, key)
    assert status == 204
    status, _ = await call(hub, "GET", path, key)
    assert status == 404
    audited = await hub.hub.pool.fetch(
        "SELECT action FROM audit_log WHERE target = $1 ORDER BY id", later["id"]
    )
    assert [r["action"] for r in audited] == [
        "maintenance_window.created",
        "maintenance_window.updated",
        "maintenance_window.deleted",
    ]


async def test_a_climb_during_the_window_is_muted_step_by_step_and_an_acknowledged_incident_stays_quiet(
    hub: RunningHub, nc: NATS
) -> None:
    key = await admin_key(hub)
    async with receiving(Receiver()) as manager:
        # Filters that take nothing: whatever the manager would hear comes from the policy.
        created = await create_endpoint(hub, key, url=manager.url, types=["intrusion"])
        manager.secret = created["secret"]
        status, _ = await call(
            hub,
            "POST",
            "/v1/policies",
            key,
            {"steps": [{"endpoints": [created["id"]], "waitS": 0.3, "repeat": 20}]},
        )
        assert status == 201
        now = datetime.now(UTC)
        end = now + timedelta(seconds=4)
        await create_window(hub, key, {"site": SITE, "zone": "fcc-2", "schedule": once(now, end)})

        fault = a_fault()
        await publish_change(nc, fault, "opened", Status.OPEN)

        async def steps_muted() -> list[dict[str, Any]] | None:
            found = await deliveries(hub, key, f"?incident={fault.id}")
            return found if sum(d["change"] == "escalated" for d in found) >= 2 else None

        muted = await eventually(steps_muted, what="two muted climb steps")
        assert {d["status"] for d in muted} == {"muted"}
        await publish_change(nc, fault, "acknowledged", Status.ACKNOWLEDGED)
        await consumed(nc)

        async def over() -> bool | None:
            held = await hub.hub.pool.fetchval(
                "SELECT count(*) FROM escalation_held WHERE incident_id = $1", fault.id
            )
            return True if datetime.now(UTC) > end and held == 0 else None

        await eventually(over, what="the window over and the fault looked at again", timeout=20)
        # Acknowledged during the window: nobody is paged about it after (the site's endpoint
        # had the window's ending reminder only).
        assert [e["type"] for e in manager.events()] == ["org.safetyhub.maintenance.ending.v1"]
        statuses = {d["status"] for d in await deliveries(hub, key, f"?incident={fault.id}")}
        assert statuses == {"muted"}


async def test_a_reminder_and_a_held_opening_due_while_the_hub_is_down_are_sent_once_after_it_restarts(
    nats_url: str, database_url: str, nc: NATS
) -> None:
    async with receiving(Receiver()) as room:
        async with escalation_hub(nats_url, database_url) as first:
            key = await admin_key(first)
            room.secret = (await create_endpoint(first, key, url=room.url, sites=[SITE]))["secret"]
            now = datetime.now(UTC)
            end = now + timedelta(seconds=15)
            reminder_due = end - timedelta(seconds=8)
            await create_window(
                first, key, {"site": SITE, "zone": "fcc-2", "schedule": once(now, end), "reminderLeadS": 8}
            )
            fault = a_fault()
            await publish_change(nc, fault, "opened", Status.OPEN)
            await consumed(nc)
            (held,) = await deliveries(first, key, f"?incident={fault.id}")
            assert held["status"] == "muted"
        # Both timers fall due while no hub runs: they are rows, not sleeping tasks.
        assert datetime.now(UTC) < reminder_due, "the first hub took too long to stop for this test"
        assert room.received == []
        async with escalation_hub(nats_url, database_url) as second:
            ending = await eventually(lambda: heard(room, "ending"), what="the reminder", timeout=20)
            opened = await eventually(lambda: heard(room, "opened"), what="the held opening", timeout=25)
            assert [e["subject"] for e in opened] == [fault.id] and len(ending) == 1
            assert max(room.by_id.values()) == 1
            # The receiver may have its copy before the hub has recorded the answer.
            await settled(second, key, f"?incident={fault.id}")
