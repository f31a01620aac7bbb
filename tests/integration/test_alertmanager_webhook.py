"""POST /v1/integrations/alertmanager in a running hub (real NATS, PostgreSQL and alarm engine):
a firing alert raises an alarm on the ALARMS stream, its repeated notifications add none, its
resolution clears it; a wrong version or an unknown site is answered 422 naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.alarms.adapters.decode import read_transition
from services.alarms.channel import ALARM_CHANNEL
from services.common.bus.connection import connect_bus
from tests.conftest import REPO, RunningHub, eventually

pytestmark = pytest.mark.integration

FIXTURES = REPO / "tests" / "fixtures" / "alertmanager"
TENANT, SITE = "ulsan-refining", "ulsan-refinery"
FINGERPRINT = "3f1a4c2b9d8e7f60"
DEVICE = f"am-{FINGERPRINT}"
ALARM = f"{DEVICE}--infra-alert"
STARTED = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)


def notification(name: str, ended: datetime | None = None) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    alert = body["alerts"][0]
    alert["startsAt"] = STARTED.isoformat()
    if ended is not None:
        alert["endsAt"] = ended.isoformat()
    return body


async def send(hub: RunningHub, body: object, key: str = "gateway") -> tuple[int, dict[str, Any], str]:
    url = hub.url + "/v1/integrations/alertmanager"
    async with hub.session.post(url, json=body, headers=hub.auth(key)) as response:
        return response.status, await response.json(content_type=None), response.content_type


async def point(pool: asyncpg.Pool) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT * FROM alarm_points WHERE tenant = $1 AND site = $2 AND alarm_id = $3", TENANT, SITE, ALARM
    )


def in_state(pool: asyncpg.Pool, state: str) -> Any:
    async def probe() -> asyncpg.Record | None:
        row = await point(pool)
        return row if row is not None and row["state"] == state else None

    return eventually(probe, what=f"{ALARM} in {state}")


async def test_a_firing_alert_raises_an_alarm_repeats_add_none_and_its_resolution_clears_it(
    running_hub: RunningHub, nats_url: str
) -> None:
    pool = running_hub.hub.pool
    status, body, _ = await send(running_hub, notification("firing.json"))
    assert status == 202, body
    (firing_id,) = body["accepted"]
    raised = await in_state(pool, "UNACK")
    assert raised["active"] and raised["priority"] == "medium"

    # Alertmanager repeats the notification (repeat_interval, or a retry after a timeout).
    for _ in range(3):
        status, again, _ = await send(running_hub, notification("firing.json"))
        assert (status, again["accepted"]) == (202, [firing_id])

    ended = STARTED + timedelta(minutes=20)
    status, body, _ = await send(running_hub, notification("resolved.json", ended))
    assert status == 202, body
    cleared = await in_state(pool, "RTNUN")  # cleared, waiting for an operator's acknowledgement
    assert not cleared["active"]

    rows = await pool.fetch(
        "SELECT id, value, time, detail FROM observations WHERE device = $1 ORDER BY time", DEVICE
    )
    assert [(r["value"], r["time"]) for r in rows] == [(1.0, STARTED), (0.0, ended)]
    assert json.loads(rows[0]["detail"])["attributes"]["zone"] == "sru"
    activations = await pool.fetch(
        "SELECT old_state, new_state FROM alarm_transitions WHERE alarm_id = $1 ORDER BY at, seq", ALARM
    )
    assert [(r["old_state"], r["new_state"]) for r in activations] == [("NORM", "UNACK"), ("UNACK", "RTNUN")]

    # The same two transitions, and no others, are on the ALARMS stream for this alarm.
    nc: NATS = await connect_bus(nats_url, name="alertmanager-test")
    try:
        sub = await nc.jetstream().subscribe(
            ALARM_CHANNEL.subject(TENANT, SITE, ALARM),
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        seen = [read_transition(await sub.next_msg(timeout=10))[0] for _ in range(2)]
        with pytest.raises(TimeoutError):
            await sub.next_msg(timeout=1)
        await sub.unsubscribe()
    finally:
        await nc.close()
    assert [(t.old, t.new) for t in seen] == [("NORM", "UNACK"), ("UNACK", "RTNUN")]


async def test_a_wrong_version_an_unknown_site_or_a_viewer_is_refused_naming_the_field(
    running_hub: RunningHub,
) -> None:
    wrong = {**notification("firing.json"), "version": "3"}
    status, body, content_type = await send(running_hub, wrong)
    assert (status, content_type) == (422, "application/problem+json")
    assert body["errors"] == [{"field": "version", "detail": body["errors"][0]["detail"]}]
    assert '"4"' in body["detail"]

    elsewhere = notification("firing.json")
    elsewhere["alerts"][0]["labels"]["site"] = "mipo-aromatics"  # another tenant's site
    status, body, _ = await send(running_hub, elsewhere)
    assert status == 422
    assert [e["field"] for e in body["errors"]] == ["alerts[0].labels.site"]
    assert "label 'site'" in body["detail"]

    status, body, _ = await send(running_hub, {"version": "4", "status": "firing"})
    assert (status, [e["field"] for e in body["errors"]]) == (422, ["alerts"])

    status, _, _ = await send(running_hub, notification("firing.json"), key="viewer")
    assert status == 403
    async with running_hub.session.post(running_hub.url + "/v1/integrations/alertmanager", json={}) as resp:
        assert resp.status == 401

    count = await running_hub.hub.pool.fetchval("SELECT count(*) FROM observations WHERE device = $1", DEVICE)
    assert count == 0
