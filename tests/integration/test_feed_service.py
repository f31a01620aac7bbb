"""The city feed in a running hub: readings posted over HTTP raise alarms and an incident; the
site's sharing policy (set over HTTP, versioned, audited) decides what reaches FEED; every export
is listed with the policy version that allowed it; `none` stops the flow, tightening re-exports
nothing, a delay holds events back as due rows, and `counts` sends hourly counts per zone."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.alarms.channel import ALARM_CHANNEL
from services.common.auth.keys import create_key
from services.common.bus.connection import connect_bus
from services.common.bus.deadletter import REASON_HEADER
from services.common.bus.streams import deadletter_subject
from services.common.contracts import IncidentChange
from services.common.contracts.cloudevents import MSG_ID
from services.feed.channel import FEED, FEED_CHANNEL
from services.feed.config import FeedConfig, SitePolicy
from services.feed.domain.policy import Level
from services.feed.service import ALARMS_DURABLE, INCIDENTS_DURABLE
from services.hub.bootstrap import Endpoints, Hub
from services.incidents.channel import INCIDENT_CHANNEL, INCIDENTS
from tests.conftest import REPO, RunningHub, eventually, hub_config

SITE = "ulsan-refinery"
TENANT = "ulsan-refining"
REDACTED_INCIDENT = {
    "id",
    "type",
    "status",
    "severity",
    "urgency",
    "certainty",
    "confirmed",
    "change",
    "opened_at",
    "updated_at",
    "resolved_at",
    "zones",
    "location",
    # Readings raise no picture: an empty list.
    "snapshots",
}
DEVICES = ("gd-fcc2-203", "gd-fcc2-204", "gd-cdu1-101")


@pytest.fixture
async def feed_hub(nats_url: str, database_url: str) -> AsyncIterator[RunningHub]:
    # A short grace for closed hours and timers looked at often: the tests stay short.
    config = hub_config(feed=FeedConfig(counts_grace_s=2, timer_poll_ms=100, batch_wait_ms=5))
    hub = Hub(config, REPO, Endpoints(nats_url, database_url))
    await hub.start()
    keys = {
        "gateway": await create_key(hub.pool, tenant=TENANT, role="gateway"),
        "admin": await create_key(hub.pool, tenant=TENANT, role="admin"),
        "operator": await create_key(hub.pool, tenant=TENANT, role="operator"),
        "mipo_admin": await create_key(hub.pool, tenant="mipo-petrochem", role="admin"),
    }
    async with aiohttp.ClientSession() as session:
        yield RunningHub(hub, hub.http_url, keys, session)
    await hub.stop()


def reading(device: str, kind: str, unit: str, value: float, at: datetime) -> dict[str, Any]:
    return {
        "site": SITE,
        "device": device,
        "kind": kind,
        "unit": unit,
        "value": value,
        "time": at.isoformat(),
        "id": f"{device}-{uuid.uuid4().hex[:10]}",
    }


async def post(hub: RunningHub, items: list[dict[str, Any]]) -> None:
    async with hub.session.post(
        hub.url + "/v1/observations", json=items, headers=hub.auth("gateway")
    ) as response:
        assert response.status == 202, await response.text()


async def put_policy(hub: RunningHub, body: dict[str, Any], *, key: str = "admin", site: str = SITE) -> Any:
    async with hub.session.put(
        f"{hub.url}/v1/sharing-policies/{site}", json=body, headers=hub.auth(key)
    ) as response:
        return response.status, await response.json(content_type=None)


async def feed_messages(js: JetStreamContext, subject: str = "feed.>") -> list[dict[str, Any]]:
    """Every FEED message on `subject` so far, decoded."""
    info = await js.stream_info(FEED.name)
    if info.state.messages == 0:
        return []
    sub = await js.subscribe(
        subject, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL), ordered_consumer=True
    )
    out = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except TimeoutError:
                break
            out.append(json.loads(msg.data))
    finally:
        await sub.unsubscribe()
    return out


async def caught_up(js: JetStreamContext) -> None:
    """Wait until the feed's consumers have processed everything on INCIDENTS and ALARMS (by
    their own counts: the ALARMS stream's last message may be an `alarmflood.` one, outside the
    feed's filter, which its durable is never delivered)."""

    async def done() -> bool:
        for stream, durable in (
            (INCIDENTS.name, INCIDENTS_DURABLE),
            (ALARM_CHANNEL.stream.name, ALARMS_DURABLE),
        ):
            info = await js.consumer_info(stream, durable)
            if info.num_pending or info.num_ack_pending:
                return False
        return True

    await eventually(done, what="the feed consumed INCIDENTS and ALARMS")


async def test_a_redacted_site_shares_its_incident_without_devices_values_or_names_and_none_stops_it(
    feed_hub: RunningHub, nats_url: str
) -> None:
    hub = feed_hub
    nc: NATS = await connect_bus(nats_url, name="feed-test")
    js = nc.jetstream()
    try:
        status, body = await put_policy(hub, {"level": "redacted"})
        assert status == 200, body
        assert body["version"] == 1 and body["level"] == "redacted" and body["source"] == "api"

        at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        await post(
            hub,
            [
                reading("gd-fcc2-203", "gas.h2s", "ppm", 25.0, at),
                reading("gd-fcc2-204", "gas.h2s", "ppm", 26.0, at + timedelta(seconds=5)),
            ],
        )

        async def shared_incident() -> list[dict[str, Any]]:
            return await feed_messages(js, FEED_CHANNEL.subject(TENANT, SITE, "incident"))

        events = await eventually(shared_incident, what="the incident on FEED")
        first = events[0]
        assert first["type"] == "org.safetyhub.feed.incident.v1"
        assert first["specversion"] == "1.0" and first["tenant"] == TENANT and first["site"] == SITE
        assert first["policyversion"] == 1
        assert set(first["data"]) == REDACTED_INCIDENT
        assert first["data"]["type"] == "gas_release" and first["data"]["zones"] == ["fcc-2"]
        assert first["data"]["change"] == "opened"
        # Nothing of the plant's own: no device id, no value, no rule, no title.
        for event in await feed_messages(js):
            text = json.dumps(event)
            assert not [d for d in DEVICES if d in text], event
            assert "h2s-high" not in text and "25.0" not in text
        incident_id = first["data"]["id"]
        row = await hub.hub.pool.fetchrow("SELECT lat, lon FROM incidents WHERE id = $1", incident_id)
        assert first["data"]["location"]["coordinates"] != [row["lon"], row["lat"]]

        # Every export is listed with the policy version that let it leave, and audited.
        async with hub.session.get(
            f"{hub.url}/v1/feed/exports", params={"site": SITE}, headers=hub.auth("admin")
        ) as response:
            assert response.status == 200
            exports = (await response.json())["exports"]
        assert {e["eventId"] for e in exports} >= {e["id"] for e in events}
        assert {e["policyVersion"] for e in exports} == {1}
        assert {e["level"] for e in exports} == {"redacted"}
        audited = await hub.hub.pool.fetch(
            "SELECT action, detail FROM audit_log WHERE tenant = $1 AND target = $2 ORDER BY id", TENANT, SITE
        )
        actions = [r["action"] for r in audited]
        assert actions[0] == "sharing_policy.set" and "feed.exported" in actions

        # `none`: from now on nothing of the site leaves; nothing already sent is sent again.
        await caught_up(js)
        status, body = await put_policy(hub, {"level": "none"})
        assert status == 200 and body["version"] == 2
        before = (await js.stream_info(FEED.name)).state.last_seq
        changes = (await js.stream_info(INCIDENTS.name)).state.last_seq
        await post(hub, [reading("gd-cdu1-101", "gas.lel", "%LEL", 45.0, at + timedelta(seconds=30))])

        async def incident_changed() -> bool:
            return (await js.stream_info(INCIDENTS.name)).state.last_seq > changes

        await eventually(incident_changed, what="an incident change after the policy became none")
        await caught_up(js)
        assert (await js.stream_info(FEED.name)).state.last_seq == before
        async with hub.session.get(
            f"{hub.url}/v1/sharing-policies/{SITE}", headers=hub.auth("admin")
        ) as response:
            assert (await response.json())["level"] == "none"
    finally:
        await nc.close()


async def test_a_delay_holds_events_back_as_due_rows_and_a_policy_tightened_meanwhile_keeps_them(
    feed_hub: RunningHub, nats_url: str
) -> None:
    hub = feed_hub
    nc: NATS = await connect_bus(nats_url, name="feed-test")
    js = nc.jetstream()
    try:
        status, _ = await put_policy(hub, {"level": "redacted", "delay_s": 3})
        assert status == 200
        now = datetime.now(UTC)
        await post(hub, [reading("gd-cdu1-101", "gas.lel", "%LEL", 45.0, now)])

        async def held() -> bool:
            count = await hub.hub.pool.fetchval("SELECT count(*) FROM feed_pending WHERE kind = 'incident'")
            return bool(count)

        await eventually(held, what="the incident held back")
        assert await feed_messages(js, FEED_CHANNEL.subject(TENANT, SITE, "incident")) == []

        async def released() -> list[dict[str, Any]]:
            return await feed_messages(js, FEED_CHANNEL.subject(TENANT, SITE, "incident"))

        events = await eventually(released, what="the incident released after its delay")
        published = datetime.now(UTC)
        assert published - now >= timedelta(seconds=3)
        assert events[0]["data"]["type"] == "gas_release"

        # Held again, then the policy tightened before its time: it never leaves.
        status, _ = await put_policy(hub, {"level": "redacted", "delay_s": 30})
        assert status == 200
        await post(hub, [reading("gd-fcc2-203", "gas.h2s", "ppm", 25.0, datetime.now(UTC))])

        async def held_again() -> bool:
            count = await hub.hub.pool.fetchval(
                "SELECT count(*) FROM feed_pending WHERE kind = 'incident' AND policy_version = 2"
            )
            return bool(count)

        await eventually(held_again, what="the second incident held back")
        status, _ = await put_policy(hub, {"level": "redacted", "fields": {"incident": ["type"]}})
        assert status == 200
        await hub.hub.pool.execute("UPDATE feed_pending SET due = now()")

        async def gone() -> bool:
            return not await hub.hub.pool.fetchval("SELECT count(*) FROM feed_pending")

        await eventually(gone, what="the held events taken at their due time")
        incidents = await feed_messages(js, FEED_CHANNEL.subject(TENANT, SITE, "incident"))
        assert [e["id"] for e in incidents] == [e["id"] for e in events]
    finally:
        await nc.close()


async def test_counts_send_each_zones_hourly_counts_and_nothing_of_any_incident(
    feed_hub: RunningHub, nats_url: str
) -> None:
    hub = feed_hub
    nc: NATS = await connect_bus(nats_url, name="feed-test")
    js = nc.jetstream()
    try:
        status, _ = await put_policy(hub, {"level": "counts"})
        assert status == 200
        # An hour that has ended: its counts leave once the grace after they were counted passed.
        at = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=10, second=0, microsecond=0)
        await post(hub, [reading("gd-cdu1-101", "gas.lel", "%LEL", 45.0, at)])

        async def kpis() -> list[dict[str, Any]]:
            return await feed_messages(js, FEED_CHANNEL.subject(TENANT, SITE, "kpi"))

        events = await eventually(kpis, what="the hour's counts on FEED")
        await caught_up(js)
        assert await feed_messages(js, FEED_CHANNEL.subject(TENANT, SITE, "incident")) == []
        assert await feed_messages(js, FEED_CHANNEL.subject(TENANT, SITE, "alarm")) == []
        data = [e["data"] for e in await kpis()]
        hour = at.replace(minute=0).isoformat().replace("+00:00", "Z")
        assert len(data) == 1, data
        assert data[0]["zone"] == "cdu-1" and data[0]["hour"] == hour
        # Every incident the site opened in that hour (the gas release, and the detector's
        # communication loss once its readings stopped), all in cdu-1.
        opened = await hub.hub.pool.fetchval(
            "SELECT count(*) FROM incidents WHERE date_trunc('hour', opened_at) = $1", at.replace(minute=0)
        )
        assert data[0]["incidents"] == opened >= 1 and data[0]["alarms"] >= 1
        assert events[0]["type"] == "org.safetyhub.feed.kpi.v1"
    finally:
        await nc.close()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"level": "public"}, "level"),
        ({"level": "redacted", "fields": {"incident": ["type", "device_id"]}}, "fields.incident[1]"),
        ({"level": "redacted", "grid_m": 0}, "grid_m"),
        ({"level": "redacted", "grid_m": -10}, "grid_m"),
        ({"level": "redacted", "fields": {"camera": []}}, "fields.camera"),
    ],
)
async def test_a_bad_policy_is_422_naming_the_field_and_changes_nothing(
    feed_hub: RunningHub, body: dict[str, Any], field: str
) -> None:
    status, problem = await put_policy(feed_hub, body)

    assert status == 422, problem
    assert problem["errors"][0]["field"] == field
    assert problem["type"].endswith("/invalid-policy")
    assert not await feed_hub.hub.pool.fetchval("SELECT count(*) FROM feed_policies")


async def test_only_the_tenants_admins_set_its_sites_policies(feed_hub: RunningHub) -> None:
    status, _ = await put_policy(feed_hub, {"level": "full"}, key="operator")
    assert status == 403
    status, _ = await put_policy(feed_hub, {"level": "full"}, key="mipo_admin")
    assert status == 404
    async with feed_hub.session.get(
        f"{feed_hub.url}/v1/feed/exports", headers=feed_hub.auth("operator")
    ) as response:
        assert response.status == 403
    assert not await feed_hub.hub.pool.fetchval("SELECT count(*) FROM feed_policies")


async def test_a_configured_policy_is_written_once_and_an_api_change_stays_until_the_config_changes(
    nats_url: str, database_url: str
) -> None:
    configured = SitePolicy(tenant=TENANT, site=SITE, level=Level.COUNTS)

    async def start(policies: list[SitePolicy]) -> Hub:
        hub = Hub(hub_config(feed=FeedConfig(policies=policies)), REPO, Endpoints(nats_url, database_url))
        await hub.start()
        return hub

    async def versions(hub: Hub) -> list[tuple[int, str, str]]:
        rows = await hub.pool.fetch("SELECT version, level, source FROM feed_policies ORDER BY version")
        return [(r["version"], r["level"], r["source"]) for r in rows]

    hub = await start([configured])
    try:
        assert await versions(hub) == [(1, "counts", "config")]
        audited = await hub.pool.fetchval(
            "SELECT actor_kind FROM audit_log WHERE action = 'sharing_policy.set' AND target = $1", SITE
        )
        assert audited == "command"
        admin = await create_key(hub.pool, tenant=TENANT, role="admin")
        async with (
            aiohttp.ClientSession() as session,
            session.put(
                f"{hub.http_url}/v1/sharing-policies/{SITE}",
                json={"level": "none"},
                headers={"Authorization": f"Bearer {admin}"},
            ) as response,
        ):
            assert response.status == 200
    finally:
        await hub.stop()

    # The same config again: the policy set through the API stays in force.
    hub = await start([configured])
    try:
        assert await versions(hub) == [(1, "counts", "config"), (2, "none", "api")]
    finally:
        await hub.stop()

    # A changed config: a new version.
    hub = await start([SitePolicy(tenant=TENANT, site=SITE, level=Level.REDACTED, grid_m=500)])
    try:
        assert await versions(hub) == [(1, "counts", "config"), (2, "none", "api"), (3, "redacted", "config")]
    finally:
        await hub.stop()


async def test_an_incident_change_of_a_site_the_registry_does_not_hold_is_dead_lettered(
    feed_hub: RunningHub, nats_url: str
) -> None:
    nc: NATS = await connect_bus(nats_url, name="feed-test")
    js = nc.jetstream()
    try:
        change = IncidentChange(incident_id="01M809PETR8A1ZQ7W3KXNB2C5D")
        change.envelope.id, change.envelope.tenant, change.envelope.site = (
            "01M809PETR5H7MZ0A9QK3W8XJT",
            TENANT,
            "atlantis",
        )
        change.entry.change = "opened"
        subject = INCIDENT_CHANNEL.subject(TENANT, "atlantis", change.incident_id)
        await js.publish(subject, change.SerializeToString(), headers={MSG_ID: change.envelope.id})
        sub = await js.subscribe(
            deadletter_subject(INCIDENTS_DURABLE, subject),
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        dead = await sub.next_msg(timeout=15)
        await sub.unsubscribe()
        assert "atlantis" in (dead.headers or {})[REASON_HEADER]
        assert "site registry" in (dead.headers or {})[REASON_HEADER]
    finally:
        await nc.close()
