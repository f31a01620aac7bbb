"""The incidents service in a running hub: readings posted over HTTP raise alarms, the alarms
become one incident in PostgreSQL and on the INCIDENTS stream; a copy of an alarm changes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.alarms.channel import ALARM_CHANNEL
from services.common.bus.connection import connect_bus
from services.common.bus.deadletter import REASON_HEADER
from services.common.bus.streams import deadletter_subject
from services.common.contracts import CapCertainty, IncidentStatus, IncidentType
from services.common.contracts.cloudevents import MSG_ID
from services.incidents.channel import INCIDENT_CHANNEL
from tests.conftest import RunningHub, eventually

SITE = "ulsan-refinery"
TENANT = "ulsan-refining"
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def h2s(device: str, seconds: float, value: float) -> dict[str, Any]:
    return {
        "site": SITE,
        "device": device,
        "kind": "gas.h2s",
        "unit": "ppm",
        "value": value,
        "time": (BASE + timedelta(seconds=seconds)).isoformat(),
        "id": f"{device}-{seconds}-{uuid.uuid4().hex[:6]}",
    }


async def post(hub: RunningHub, items: list[dict[str, Any]]) -> None:
    async with hub.session.post(
        hub.url + "/v1/observations", json=items, headers=hub.auth("gateway")
    ) as response:
        assert response.status == 202, await response.text()


async def gas_incident(pool: asyncpg.Pool, members: int) -> asyncpg.Record:
    async def probe() -> asyncpg.Record | None:
        row = await pool.fetchrow(
            "SELECT * FROM incidents WHERE tenant = $1 AND site = $2 AND type = 'gas_release'", TENANT, SITE
        )
        if row is None:
            return None
        count = await pool.fetchval(
            "SELECT jsonb_array_length(body->'members') FROM incidents WHERE tenant = $1 AND id = $2",
            TENANT,
            row["id"],
        )
        return row if count >= members else None

    return await eventually(probe, what=f"a gas release with {members} alarms")


async def test_two_detectors_and_their_voting_group_are_one_observed_gas_release(
    running_hub: RunningHub, nats_url: str
) -> None:
    pool = running_hub.hub.pool
    nc: NATS = await connect_bus(nats_url, name="incidents-test")
    try:
        # Both FCC-2 H2S detectors above 20 ppm: each one's high and high-high, and the 2oo2 group.
        reading = h2s("gd-fcc2-203", 0, 25.0)
        await post(running_hub, [reading, h2s("gd-fcc2-204", 5, 26.0)])
        row = await gas_incident(pool, members=5)
        assert row["status"] == "open"
        assert row["severity"] == "Extreme"
        incidents = await pool.fetchval(
            "SELECT count(*) FROM incidents WHERE tenant = $1 AND type = 'gas_release'", TENANT
        )
        assert incidents == 1

        # Its changes are on INCIDENTS under its own subject, the first one "opened".
        js = nc.jetstream()
        subject = INCIDENT_CHANNEL.subject(TENANT, SITE, row["id"])
        sub = await js.subscribe(subject, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
        first = await sub.next_msg(timeout=10)
        assert first.headers is not None and first.headers["ce-type"] == "org.safetyhub.incident.opened.v1"
        opened = INCIDENT_CHANNEL.decode(first.data)
        assert opened.incident.type == IncidentType.INCIDENT_TYPE_GAS_RELEASE
        assert opened.incident.status == IncidentStatus.INCIDENT_STATUS_OPEN
        assert list(opened.incident.zones) == ["fcc-2"]
        # The causal chain goes on: the reading that raised the first alarm opened the incident.
        assert opened.envelope.correlation_id == reading["id"]

        async def confirmed() -> bool:
            latest = await js.get_last_msg(INCIDENT_CHANNEL.stream.name, subject)
            message = INCIDENT_CHANNEL.decode(latest.data)
            return message.incident.certainty == CapCertainty.CAP_CERTAINTY_OBSERVED

        # The voting group's confirmed alarm makes it Observed.
        await eventually(confirmed, what="the incident confirmed by the 2oo2 group")
        await sub.unsubscribe()

        # A copy of an alarm transition under a new message id: JetStream and the inbox let it
        # through, fusion recognises the transition and writes nothing.
        entries = await pool.fetchval(
            "SELECT count(*) FROM incident_timeline WHERE incident_id = $1", row["id"]
        )
        version = await pool.fetchval(
            "SELECT version FROM incidents WHERE tenant = $1 AND id = $2", TENANT, row["id"]
        )
        last = await js.get_last_msg(
            ALARM_CHANNEL.stream.name, ALARM_CHANNEL.subject(TENANT, SITE, "gd-fcc2-203--h2s-high-high")
        )
        ack = await js.publish(
            last.subject, last.data, headers={**(last.headers or {}), MSG_ID: uuid.uuid4().hex}
        )

        async def consumed() -> bool:
            info = await js.consumer_info(ALARM_CHANNEL.stream.name, "incidents")
            return info.delivered.stream_seq >= ack.seq and info.num_ack_pending == 0

        await eventually(consumed, what="the incidents service consumed the copy")
        assert (
            await pool.fetchval("SELECT count(*) FROM incident_timeline WHERE incident_id = $1", row["id"])
            == entries
        )
        assert (
            await pool.fetchval(
                "SELECT version FROM incidents WHERE tenant = $1 AND id = $2", TENANT, row["id"]
            )
            == version
        )
    finally:
        await nc.close()


async def test_an_alarm_message_fusion_cannot_read_goes_to_deadletter_and_fusion_goes_on(
    running_hub: RunningHub, nats_url: str
) -> None:
    nc: NATS = await connect_bus(nats_url, name="incidents-test")
    try:
        js = nc.jetstream()
        subject = ALARM_CHANNEL.subject(TENANT, SITE, "gd-fcc2-203--h2s-high")
        await js.publish(subject, b"\x00not an alarm transition", headers={MSG_ID: uuid.uuid4().hex})
        sub = await js.subscribe(
            deadletter_subject("incidents", subject), config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        dead = await sub.next_msg(timeout=15)
        await sub.unsubscribe()
        assert dead.data == b"\x00not an alarm transition"
        assert "AlarmTransition" in (dead.headers or {})[REASON_HEADER]
        # Fusion goes on: the next alarm still makes an incident.
        await post(running_hub, [h2s("gd-fcc2-203", 0, 25.0)])
        await gas_incident(running_hub.hub.pool, members=1)
    finally:
        await nc.close()


async def test_a_flood_is_one_incident_and_safety_alarms_keep_their_own(running_hub: RunningHub) -> None:
    # Eleven activations of one tank detector's latching high-high in 20 s (cleared in between): the
    # site floods. The alarms are safety-class: they stay in their own gas release.
    readings = [
        {
            "site": SITE,
            "device": "gd-tf-501",
            "kind": "gas.lel",
            "unit": "%LEL",
            "value": 45.0 if t % 2 == 0 else 1.0,
            "time": (BASE + timedelta(seconds=t)).isoformat(),
            "id": f"gd-tf-501-{t}-{uuid.uuid4().hex[:6]}",
        }
        for t in range(21)
    ]
    await post(running_hub, readings)
    pool = running_hub.hub.pool

    async def flood_counted() -> asyncpg.Record | None:
        # Resolved at the flood's end, with the tank detector's communication loss (a
        # system-class alarm at 50 s) counted, whichever of the two reached fusion first.
        row = await pool.fetchrow(
            "SELECT * FROM incidents WHERE tenant = $1 AND type = 'alarm_flood' AND status = 'resolved'",
            TENANT,
        )
        counted = row is not None and msgspec.json.decode(row["body"])["counts"].get("class.system", 0) >= 1
        return row if counted else None

    flood = await eventually(flood_counted, what="the flood incident, resolved at its end, the alarm counted")
    changes = await pool.fetch(
        "SELECT change FROM incident_timeline WHERE incident_id = $1 ORDER BY at, seq", flood["id"]
    )
    assert [c["change"] for c in changes] == ["opened", "joined", "raised", "resolved"]
    assert not await pool.fetchval(
        "SELECT count(*) FROM incidents WHERE tenant = $1 AND type = 'comm_loss' AND status = 'open'", TENANT
    )
    gas = await pool.fetch(
        "SELECT id, body FROM incidents WHERE tenant = $1 AND type = 'gas_release' AND site = $2",
        TENANT,
        SITE,
    )
    assert len(gas) == 1, "the tank's gas alarms are one incident of their own"
