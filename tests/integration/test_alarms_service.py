"""The alarm engine in a running hub: readings posted over HTTP raise, clear and latch alarms in
PostgreSQL and on the ALARMS stream; voting, floods and redelivery through the real bus."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.alarms.adapters.decode import read_flood, read_transition
from services.alarms.channel import ALARM_CHANNEL
from services.alarms.config import AlarmsConfig
from services.common.auth.keys import create_key
from services.common.bus.connection import connect_bus
from services.common.bus.deadletter import REASON_HEADER
from services.common.bus.streams import deadletter_subject
from services.common.contracts.cloudevents import MSG_ID
from services.hub.bootstrap import Endpoints, Hub
from services.ingest.channel import OBSERVATION_CHANNEL
from tests.conftest import REPO, RunningHub, eventually, hub_config

SITE = "ulsan-refinery"
TENANT = "ulsan-refining"
# An hour ago: inside what ingest accepts, and every on-delay of the rules is long past.
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def gas(device: str, kind: str, seconds: float, value: float | None, **fields: Any) -> dict[str, Any]:
    unit = {"gas.h2s": "ppm", "gas.lel": "%LEL", "gas.co": "ppm"}[kind]
    item: dict[str, Any] = {
        "site": SITE,
        "device": device,
        "kind": kind,
        "unit": unit,
        "value": value,
        "time": (BASE + timedelta(seconds=seconds)).isoformat(),
        "id": f"{device}-{kind}-{seconds}-{uuid.uuid4().hex[:6]}",
    }
    item.update(fields)
    return item


@pytest.fixture
async def nc(nats_url: str) -> Any:
    client = await connect_bus(nats_url, name="alarms-test")
    yield client
    await client.close()


async def post(hub: RunningHub, items: list[dict[str, Any]]) -> None:
    url = hub.url + "/v1/observations"
    async with hub.session.post(url, json=items, headers=hub.auth("gateway")) as response:
        assert response.status == 202, await response.text()


async def point(pool: asyncpg.Pool, alarm_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT * FROM alarm_points WHERE tenant = $1 AND site = $2 AND alarm_id = $3", TENANT, SITE, alarm_id
    )


async def states_of(pool: asyncpg.Pool, alarm_id: str) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT old_state, new_state FROM alarm_transitions WHERE alarm_id = $1 ORDER BY at, seq", alarm_id
    )
    return [(r["old_state"], r["new_state"]) for r in rows]


def in_state(pool: asyncpg.Pool, alarm_id: str, state: str) -> Any:
    async def probe() -> asyncpg.Record | None:
        row = await point(pool, alarm_id)
        return row if row is not None and row["state"] == state else None

    return eventually(probe, what=f"{alarm_id} in {state}")


async def test_readings_raise_clear_and_latch_alarms_and_publish_each_transition(
    running_hub: RunningHub, nc: NATS
) -> None:
    pool = running_hub.hub.pool
    js = nc.jetstream()
    device = "gd-cdu1-101"
    await post(running_hub, [gas(device, "gas.h2s", 0, 1.0), gas(device, "gas.h2s", 10, 25.0)])
    # High-high (20 ppm, latching) at once; high (10 ppm) after its 2 s on-delay, fired by a timer.
    hh = await in_state(pool, f"{device}--h2s-high-high", "UNACK")
    high = await in_state(pool, f"{device}--h2s-high", "UNACK")
    assert hh["active"] and not hh["latched"] and hh["priority"] == "emergency"
    assert high["changed_at"] == BASE + timedelta(seconds=12)  # dated at its due time
    rows = await pool.fetch(
        "SELECT * FROM alarm_transitions WHERE alarm_id = $1 ORDER BY seq", f"{device}--h2s-high"
    )
    assert [(r["new_state"], r["timer"], r["activation"]) for r in rows] == [("UNACK", "on_delay", True)]

    await post(running_hub, [gas(device, "gas.h2s", 20, 0.5)])
    await in_state(pool, f"{device}--h2s-high", "RTNUN")
    # Latching: back to normal but unacknowledged, still shown.
    latched = await in_state(pool, f"{device}--h2s-high-high", "RTNUN")
    assert not latched["active"] and latched["latched"]
    assert await states_of(pool, f"{device}--h2s-high-high") == [("NORM", "UNACK"), ("UNACK", "RTNUN")]

    # Every transition committed is published on ALARMS, under the alarm's subject.
    subject = ALARM_CHANNEL.subject(TENANT, SITE, f"{device}--h2s-high-high")
    sub = await js.subscribe(subject, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
    seen = [read_transition(await sub.next_msg(timeout=10))[0] for _ in range(2)]
    await sub.unsubscribe()
    assert [(t.old, t.new) for t in seen] == [("NORM", "UNACK"), ("UNACK", "RTNUN")]


async def test_a_redelivered_batch_never_yields_a_second_transition(
    running_hub: RunningHub, nc: NATS
) -> None:
    pool = running_hub.hub.pool
    device = "gd-cdu1-102"
    await post(running_hub, [gas(device, "gas.lel", 0, 45.0)])
    await in_state(pool, f"{device}--lel-high-high", "UNACK")
    await in_state(pool, f"{device}--lel-high", "UNACK")
    await in_state(pool, f"{device}--gas-lel-stale", "UNACK")  # an hour old: stale long since
    before = await pool.fetchval(
        "SELECT count(*) FROM alarm_transitions WHERE alarm_id LIKE $1", f"{device}--%"
    )
    # The very message again, under another message id: neither JetStream nor the consumer's
    # inbox recognises it, only the engine's per-observation identity can.
    js = nc.jetstream()
    stream = OBSERVATION_CHANNEL.stream.name
    subject = OBSERVATION_CHANNEL.subject(TENANT, SITE, device)
    last = await js.get_last_msg(stream, subject)
    ack = await js.publish(subject, last.data, headers={MSG_ID: uuid.uuid4().hex})

    async def consumed() -> bool:
        info = await js.consumer_info(stream, "alarms")
        return info.delivered.stream_seq >= ack.seq and info.num_ack_pending == 0

    await eventually(consumed, what="the alarm engine consumed the copy")
    after = await pool.fetchval(
        "SELECT count(*) FROM alarm_transitions WHERE alarm_id LIKE $1", f"{device}--%"
    )
    assert after == before


async def test_a_flood_begins_past_ten_activations_in_ten_minutes_and_ends_below_five(
    running_hub: RunningHub, nc: NATS
) -> None:
    pool = running_hub.hub.pool
    device = "gd-tf-501"
    # A latching high-high raised eleven times (t = 0, 2, ... 20 s), cleared in between: eleven
    # activations in 20 s. The last reading stays high: the high's 2 s on-delay runs out at 22 s,
    # a twelfth. Then silence: the detector goes stale at 50 s, a thirteenth.
    readings = [gas(device, "gas.lel", t, 45.0 if t % 2 == 0 else 1.0) for t in range(21)]
    await post(running_hub, readings)

    async def ended() -> asyncpg.Record | None:
        return await pool.fetchrow("SELECT * FROM alarm_floods WHERE ended_at IS NOT NULL")

    flood = await eventually(ended, what="the flood to begin and end")
    assert flood["began_at"] == BASE + timedelta(seconds=20)  # the eleventh activation
    # Ends when fewer than five fell in the last 10 minutes: the fifth latest (16 s) leaves it.
    assert flood["ended_at"] == BASE + timedelta(seconds=16, minutes=10)
    assert flood["activations"] == 13
    activations = await pool.fetchval("SELECT count(*) FROM alarm_transitions WHERE activation")
    assert activations == 13

    sub = await nc.jetstream().subscribe(
        f"alarmflood.{TENANT}.{SITE}", config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )
    edges = [read_flood(await sub.next_msg(timeout=10)) for _ in range(2)]
    await sub.unsubscribe()
    assert [(e.began, e.at, e.count) for e in edges] == [
        (True, BASE + timedelta(seconds=20), 11),
        (False, BASE + timedelta(seconds=16, minutes=10), 4),
    ]


@pytest.fixture
async def quick_stale_hub(nats_url: str, database_url: str, tmp_path: Path) -> AsyncIterator[RunningHub]:
    """A hub whose combustible gas detectors go stale after 4 s without a reading."""
    demo = (REPO / "sites" / "alarms" / "ulsan-demo.yaml").read_text(encoding="utf-8")
    head = "  - id: gas-lel-stale\n    selector: {kind: gas.lel}\n    condition: stale\n    stale_s: "
    shorter = demo.replace(head + "30", head + "4")
    assert shorter != demo
    rules = tmp_path / "rules.yaml"
    rules.write_text(shorter, encoding="utf-8")
    config = hub_config(alarms=AlarmsConfig(rules=[str(rules)], timer_poll_ms=50))
    hub = Hub(config, REPO, Endpoints(nats_url, database_url))
    await hub.start()
    key = await create_key(hub.pool, tenant=TENANT, role="gateway")
    async with aiohttp.ClientSession() as session:
        yield RunningHub(hub, hub.http_url, {"gateway": key}, session)
    await hub.stop()


async def test_two_of_three_confirm_and_a_stale_member_degrades_the_group_as_configured(
    quick_stale_hub: RunningHub,
) -> None:
    """fcc2-lel-2oo3: gd-fcc2-201, -203 and -204 past 20 %LEL; a faulty or stale member degrades
    the group to 1oo2 (the shipped rules' policy)."""
    hub, pool = quick_stale_hub, quick_stale_hub.hub.pool
    group = "fcc2-lel-2oo3--vote"
    members = ("gd-fcc2-201", "gd-fcc2-203", "gd-fcc2-204")

    def now(device: str, value: float) -> dict[str, Any]:
        item = gas(device, "gas.lel", 0, value)
        item["time"] = datetime.now(UTC).isoformat()
        return item

    await post(hub, [now(d, 1.0) for d in members])
    # One member past its set-point (after the rule's 2 s on-delay) confirms nothing.
    await post(hub, [now("gd-fcc2-201", 25.0), now("gd-fcc2-203", 1.0), now("gd-fcc2-204", 1.0)])
    await in_state(pool, "gd-fcc2-201--lel-high", "UNACK")
    assert await states_of(pool, group) == []
    # A second one confirms.
    await post(hub, [now("gd-fcc2-201", 25.0), now("gd-fcc2-203", 25.0), now("gd-fcc2-204", 1.0)])
    await in_state(pool, group, "UNACK")
    confirmed = await pool.fetchrow("SELECT * FROM alarm_points WHERE alarm_id = $1", group)
    assert confirmed["priority"] == "emergency" and "confirmed" in confirmed["flags"]
    await post(hub, [now(d, 1.0) for d in members])
    await in_state(pool, group, "RTNUN")

    # gd-fcc2-204 falls silent: it raises its own stale alarm, and the group runs 1oo2.
    async def stale() -> bool:
        await post(hub, [now("gd-fcc2-201", 1.0), now("gd-fcc2-203", 1.0)])
        row = await point(pool, "gd-fcc2-204--gas-lel-stale")
        return row is not None and row["state"] == "UNACK"

    await eventually(stale, what="gd-fcc2-204 stale")
    await post(hub, [now("gd-fcc2-201", 25.0), now("gd-fcc2-203", 1.0)])
    await in_state(pool, group, "UNACK")
    assert await states_of(pool, group) == [("NORM", "UNACK"), ("UNACK", "RTNUN"), ("RTNUN", "UNACK")]


async def act(
    hub: RunningHub,
    key: str,
    alarm_id: str,
    action: str,
    body: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    url = f"{hub.url}/v1/alarms/{alarm_id}/{action}"
    headers = {"Authorization": f"Bearer {key}"}
    async with hub.session.post(url, params={"site": SITE}, json=body or {}, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def test_operators_ack_and_shelve_and_are_refused_as_the_state_and_their_tenant_say(
    running_hub: RunningHub,
) -> None:
    pool = running_hub.hub.pool
    operator = await create_key(pool, tenant=TENANT, role="operator")
    other_tenant = await create_key(pool, tenant="mipo-petrochem", role="operator")
    viewer = running_hub.keys["viewer"]
    device = "gd-cdu1-103"
    await post(running_hub, [gas(device, "gas.lel", 0, 1.0), gas(device, "gas.lel", 5, 45.0)])
    hh = f"{device}--lel-high-high"
    await in_state(pool, hh, "UNACK")

    status, alarm = await act(running_hub, operator, hh, "ack", {"reason": "seen, crew sent"})
    assert status == 200, alarm
    assert (alarm["state"], alarm["active"], alarm["priority"]) == ("ACKED", True, "emergency")
    assert alarm["rationale"]["action"]["en"]
    row = await pool.fetchrow(
        "SELECT * FROM alarm_transitions WHERE alarm_id = $1 AND new_state = 'ACKED'",
        hh,
    )
    assert row["action"] == "ack" and row["reason"] == "seen, crew sent" and row["ack_latency_ms"] > 0
    audit = await pool.fetchrow("SELECT * FROM audit_log WHERE action = 'alarm.acknowledged'")
    assert audit["target"] == hh and audit["tenant"] == TENANT and audit["reason"] == "seen, crew sent"

    # Acknowledged already: 409 naming the state.
    status, problem = await act(running_hub, operator, hh, "ack")
    assert status == 409 and problem["state"] == "ACKED"
    # A shelve past the safety class maximum (8 h): 422 naming the field; without a reason too.
    status, problem = await act(
        running_hub, operator, hh, "shelve", {"reason": "wash", "duration_s": 9 * 3600}
    )
    assert status == 422 and problem["errors"][0]["field"] == "duration_s"
    status, problem = await act(running_hub, operator, hh, "shelve", {"duration_s": 60})
    assert status == 422 and problem["errors"][0]["field"] == "reason"
    status, alarm = await act(
        running_hub, operator, hh, "shelve", {"reason": "detector wash", "duration_s": 600}
    )
    assert status == 200 and alarm["state"] == "SHLVD" and alarm["shelvedUntil"]
    assert (await point(pool, hh))["state"] == "SHLVD"

    # Unknown, another tenant's, or a role that may not act.
    status, problem = await act(running_hub, operator, "gd-cdu1-103--no-such-rule", "ack")
    assert status == 404
    status, problem = await act(running_hub, other_tenant, hh, "unshelve")
    assert status == 404
    status, problem = await act(running_hub, viewer, hh, "unshelve")
    assert status == 403
    status, problem = await act(running_hub, operator, hh, "unshelve", {"reason": "x" * 20_000})
    assert status == 413
    assert (await point(pool, hh))["state"] == "SHLVD"
    assert await states_of(pool, hh) == [("NORM", "UNACK"), ("UNACK", "ACKED"), ("ACKED", "SHLVD")]


async def test_a_message_the_engine_cannot_read_goes_to_deadletter_with_the_reason(
    running_hub: RunningHub, nc: NATS
) -> None:
    js = nc.jetstream()
    subject = OBSERVATION_CHANNEL.subject(TENANT, SITE, "gd-cdu1-101")
    await js.publish(subject, b"\x00not a protobuf batch", headers={MSG_ID: uuid.uuid4().hex})
    sub = await js.subscribe(
        deadletter_subject("alarms", subject), config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )
    dead = await sub.next_msg(timeout=15)
    await sub.unsubscribe()
    assert dead.data == b"\x00not a protobuf batch"
    assert "ObservationBatch" in (dead.headers or {})[REASON_HEADER]
    # The engine goes on: a good reading after it is evaluated.
    await post(running_hub, [gas("gd-cdu1-101", "gas.h2s", 0, 30.0)])
    await in_state(running_hub.hub.pool, "gd-cdu1-101--h2s-high-high", "UNACK")


async def test_two_workers_and_operators_never_lose_each_others_update_on_one_alarm(
    running_hub: RunningHub, nats_url: str, database_url: str, nc: NATS
) -> None:
    """A second hub on the same bus and database shares the engine's durable consumer: readings of
    one detector reach both, and operators ack through both, all at once. Every transition of the
    alarm continues the one before it, and the row shows the last."""
    second = Hub(hub_config(), REPO, Endpoints(nats_url, database_url))
    await second.start()
    try:
        pool = running_hub.hub.pool
        operator = await create_key(pool, tenant=TENANT, role="operator")
        device, hh = "gd-cdu1-101", "gd-cdu1-101--h2s-high-high"
        urls = (running_hub.url, second.http_url)

        async def post_to(url: str, item: dict[str, Any]) -> None:
            headers = running_hub.auth("gateway")
            async with running_hub.session.post(
                url + "/v1/observations", json=[item], headers=headers
            ) as resp:
                assert resp.status == 202

        async def ack(url: str) -> int:
            headers = {"Authorization": f"Bearer {operator}"}
            async with running_hub.session.post(
                f"{url}/v1/alarms/{hh}/ack", params={"site": SITE}, headers=headers
            ) as resp:
                return resp.status

        readings = [
            post_to(urls[i % 2], gas(device, "gas.h2s", i, 25.0 if i % 4 < 2 else 1.0)) for i in range(40)
        ]
        acks = [ack(urls[i % 2]) for i in range(40)]
        statuses = await asyncio.gather(*readings, *acks)
        assert set(statuses[40:]) <= {200, 404, 409}  # 404 before the alarm's first reading
        js = nc.jetstream()

        async def caught_up() -> bool:
            info = await js.consumer_info(OBSERVATION_CHANNEL.stream.name, "alarms")
            return info.num_pending == 0 and info.num_ack_pending == 0

        await eventually(caught_up, what="both workers done")
        rows = await pool.fetch(
            "SELECT old_state, new_state FROM alarm_transitions WHERE alarm_id = $1 ORDER BY seq", hh
        )
        assert len(rows) >= 2
        for before, after in itertools.pairwise(rows):
            assert after["old_state"] == before["new_state"], [(r["old_state"], r["new_state"]) for r in rows]
        assert (await point(pool, hh))["state"] == rows[-1]["new_state"]
        assert await pool.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'alarm.acknowledged'"
        ) == sum(
            1 for r in rows if r["new_state"] in ("ACKED", "NORM") and r["old_state"] in ("UNACK", "RTNUN")
        )
    finally:
        await second.stop()
