"""Helpers of the escalation integration tests: a hub with short retry times, admin keys, and
incident changes published on INCIDENTS as the incidents service publishes them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import msgspec

from services.alarms.domain.model import AlarmClass, Priority
from services.common.auth.keys import create_key
from services.common.bus.publisher import JetStreamPublisher
from services.common.contracts.ids import new_id
from services.escalation.config import EscalationConfig
from services.escalation.service import DURABLE
from services.hub.bootstrap import Endpoints, Hub
from services.incidents.adapters.messages import change_message
from services.incidents.domain.incident import Incident, Member
from services.incidents.domain.model import IncidentType, Severity, Status
from services.incidents.domain.timeline import Entry
from tests.conftest import REPO, RunningHub, eventually, hub_config

TENANT = "ulsan-refining"
SITE = "ulsan-refinery"

FAST = EscalationConfig(
    retry_schedule_s=[0.3, 0.3, 0.3],
    connect_timeout_s=0.5,
    total_timeout_s=1.0,
    poll_interval_s=0.1,
    breaker_failures=100,
    breaker_cooldown_s=1.0,
)


@contextlib.asynccontextmanager
async def escalation_hub(
    nats_url: str, database_url: str, config: EscalationConfig = FAST
) -> AsyncIterator[RunningHub]:
    """The whole hub (every service, as `up` runs it) with `config` as its escalation section."""
    hub = Hub(hub_config(escalation=config), REPO, Endpoints(nats_url, database_url))
    await hub.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield RunningHub(hub, hub.http_url, {}, session)
    finally:
        await hub.stop()


def faster(**changes: Any) -> EscalationConfig:
    return msgspec.structs.replace(FAST, **changes)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def call(hub: RunningHub, method: str, path: str, key: str, body: Any = None) -> tuple[int, Any]:
    async with hub.session.request(method, hub.url + path, json=body, headers=bearer(key)) as response:
        text = await response.text()
        return response.status, (await response.json(content_type=None)) if text else None


async def admin_key(hub: RunningHub, tenant: str = TENANT, sites: list[str] | None = None) -> str:
    return await create_key(hub.hub.pool, tenant=tenant, role="admin", sites=sites)


def an_incident(
    *,
    site: str = SITE,
    type_: IncidentType = IncidentType.GAS_RELEASE,
    severity: Severity = Severity.EXTREME,
    tenant: str = TENANT,
) -> Incident:
    now = datetime.now(UTC)
    return Incident(
        id=new_id(),
        tenant=tenant,
        site=site,
        type=type_,
        rule=0,
        status=Status.OPEN,
        opened_at=now,
        last_at=now,
        updated_at=now,
        severity=severity,
        members=[
            Member(
                signal_id=new_id(),
                alarm_id="gd-fcc2-203--h2s-high",
                device="gd-fcc2-203",
                rule="h2s-high",
                kind="gas.h2s",
                zone="fcc-2",
                position=(35.47782, 129.35544),
                alarm_class=AlarmClass.SAFETY,
                priority=Priority.EMERGENCY,
                at=now,
            )
        ],
        version=1,
    )


async def publish_change(
    nc: Any, incident: Incident, change: str, status: Status, *, msg_id: str | None = None
) -> Entry:
    """One change of `incident` on INCIDENTS (its status set first), as incidents publishes it."""
    incident.status = status
    incident.version += 1
    at = datetime.now(UTC)
    incident.updated_at = at
    entry = Entry(
        id=new_id(),
        incident_id=incident.id,
        at=at,
        actor="system",
        change=change,
        what=change,
        status=status,
        tenant=incident.tenant,
    )
    message = change_message(entry, incident)
    if msg_id is not None:
        message.headers["Nats-Msg-Id"] = msg_id
    publisher = JetStreamPublisher(nc, ack_timeout=2.0)
    await publisher.start()
    try:
        await publisher.publish([message])
    finally:
        await publisher.close()
    return entry


async def create_endpoint(hub: RunningHub, key: str, **fields: Any) -> dict[str, Any]:
    status, body = await call(hub, "POST", "/v1/endpoints", key, fields)
    assert status == 201, body
    return dict(body)


async def deliveries(hub: RunningHub, key: str, query: str = "") -> list[dict[str, Any]]:
    status, body = await call(hub, "GET", "/v1/deliveries" + query, key)
    assert status == 200, body
    return list(body["items"])


async def publish_same(nc: Any, incident: Incident, entry: Entry, *, msg_id: str) -> None:
    """`entry`'s change published again under another message id (a producer's retry)."""
    message = change_message(entry, incident)
    message.headers["Nats-Msg-Id"] = msg_id
    publisher = JetStreamPublisher(nc, ack_timeout=2.0)
    await publisher.start()
    try:
        await publisher.publish([message])
    finally:
        await publisher.close()


async def consumed(nc: Any) -> None:
    """Once escalation's consumer has taken and acknowledged everything on INCIDENTS: what a test
    published has been decided on (queued or not), however slow the machine."""
    js = nc.jetstream()

    async def probe() -> bool | None:
        info = await js.consumer_info("INCIDENTS", DURABLE)
        return True if info.num_pending == 0 and info.num_ack_pending == 0 else None

    await eventually(probe, what="escalation's consumer caught up")


async def settled(hub: RunningHub, key: str, query: str = "", *, count: int = 1) -> list[dict[str, Any]]:
    """The deliveries `query` lists once there are `count` and none is pending or being sent (the
    receiver may have its copy before the hub has recorded the answer)."""

    async def probe() -> list[dict[str, Any]] | None:
        found = await deliveries(hub, key, query)
        busy = any(d["status"] in ("pending", "sending") for d in found)
        return found if len(found) == count and not busy else None

    return await eventually(probe, what=f"{count} deliveries settled")
