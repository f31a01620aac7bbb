"""The ALARMS stream against a real nats-server and PostgreSQL: created from its declaration, fed
through the outbox as the engine will feed it, and read back through the typed subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from services.alarms.adapters.decode import read_flood, read_transition
from services.alarms.adapters.messages import (
    AlarmView,
    FloodEdge,
    flood_message,
    transition_id,
    transition_message,
)
from services.alarms.channel import ALARM_CHANNEL, ALARMS, FLOOD_CHANNEL
from services.alarms.domain.model import (
    AlarmClass,
    AlarmState,
    ConditionType,
    PointId,
    Priority,
    Rationale,
    Rule,
    Selector,
    Text,
    Transition,
)
from services.common.bus.channel import Channel, ChannelPublisher
from services.common.bus.connection import connect_bus
from services.common.bus.consumer import ConsumerSpec, DurableConsumer, Rejection
from services.common.bus.publisher import JetStreamPublisher
from services.common.bus.streams import ensure_streams, stream_specs
from services.common.contracts.cloudevents import MSG_ID
from services.common.kernel.config import compose_config
from services.common.outbox import Outbox, OutboxRelay, RelayConfig
from tests.conftest import eventually
from tests.integration.conftest import started_publisher

pytestmark = pytest.mark.integration

AT = datetime(2026, 11, 22, 0, 15, 3, 250_001, tzinfo=UTC)
SITE = PointId(tenant="ulsan-refining", site="ulsan-refinery", device="gd-fcc2-203", rule="h2s-high-high")
RULE = Rule(
    id="h2s-high-high",
    selector=Selector(kind="gas.h2s"),
    condition=ConditionType.HIGH_HIGH,
    priority=Priority.EMERGENCY,
    alarm_class=AlarmClass.SAFETY,
    rationale=Rationale(
        cause=Text(ko="황화수소 누출", en="H2S release"),
        consequence=Text(ko="작업자 중독", en="Worker poisoning"),
        action=Text(ko="구역 대피", en="Evacuate the zone"),
        time_to_respond=timedelta(minutes=2),
    ),
    setpoint=20.0,
)
RAISED = Transition(
    point=SITE,
    old=AlarmState.NORM,
    new=AlarmState.UNACK,
    at=AT,
    observation_ids=("01M809PBX0VKEPBGTYJ8AHME2Z",),
    active=True,
)
FLOOD = FloodEdge(
    tenant="ulsan-refining",
    site="ulsan-refinery",
    began=True,
    at=AT,
    count=11,
    since=AT,
    activations=11,
)
FAST = RelayConfig(poll_interval=0.2, standby_interval=0.1)


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    conn = await connect_bus(nats_url, name="test-alarms")
    yield conn
    await conn.close()


@pytest.fixture
async def publisher(nc: NATS) -> AsyncIterator[JetStreamPublisher]:
    async with started_publisher(nc) as pub:
        yield pub


@pytest.fixture
async def consumers() -> AsyncIterator[list[DurableConsumer[Any]]]:
    started: list[DurableConsumer[Any]] = []
    yield started
    for consumer in started:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(consumer.stop(grace=1.0), timeout=5.0)


async def create_alarms_stream(nc: NATS, **bus: Any) -> None:
    # As the hub does for a registered service: the config type composed with the stream's key.
    config = msgspec.convert({"bus": bus}, compose_config([], [ALARMS]))
    await ensure_streams(nc.jetstream(), stream_specs(config.bus, [ALARMS]))


class Received:
    """A consumer's handler: the decoded messages, in delivery order."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    async def __call__(self, items: list[Any]) -> Sequence[Rejection]:
        self.items.extend(items)
        return ()


async def subscribe(
    nc: NATS,
    started: list[DurableConsumer[Any]],
    channel: Channel[Any],
    decode: Callable[[Msg], Any],
    durable: str,
) -> Received:
    spec = ConsumerSpec(
        stream=ALARMS.name, durable=durable, filter_subject=channel.filter_subject, batch_wait=0.01
    )
    received = Received()
    consumer = DurableConsumer[Any](nc.jetstream(), spec, decode, received)
    await consumer.start()
    started.append(consumer)
    return received


async def test_the_stream_takes_its_limits_from_the_config_or_its_defaults(nc: NATS) -> None:
    await create_alarms_stream(nc)
    info = await nc.jetstream().stream_info(ALARMS.name)
    assert set(info.config.subjects or ()) == {"alarm.>", "alarmflood.>"}
    assert info.config.max_age == pytest.approx(7 * 24 * 3600.0)

    await create_alarms_stream(nc, alarms={"max_age_hours": 1.0, "duplicate_window_s": 30.0})

    info = await nc.jetstream().stream_info(ALARMS.name)
    assert info.config.max_age == pytest.approx(3600.0)
    assert info.config.duplicate_window == pytest.approx(30.0)


async def test_a_transition_emitted_twice_through_the_outbox_is_read_back_once_typed(
    nc: NATS,
    publisher: JetStreamPublisher,
    migrated_pool: asyncpg.Pool,
    consumers: list[DurableConsumer[Any]],
) -> None:
    await create_alarms_stream(nc)
    relay = OutboxRelay(migrated_pool, publisher, "alarms", FAST)
    relay.start()
    try:
        outbox = Outbox(migrated_pool, "alarms")
        first = transition_message(RAISED, AlarmView.after(RAISED, RULE))
        async with outbox.unit_of_work() as uow:
            uow.emit(first)
            uow.emit(flood_message(FLOOD))
        await eventually(lambda: stream_holds(nc, 2), what="the first transition and the flood on ALARMS")
        # The observation batch redelivered and evaluated again: the same transition, made anew.
        again = dataclasses.replace(RAISED)
        async with outbox.unit_of_work() as uow:
            uow.emit(transition_message(again, AlarmView.after(again, RULE)))
        await eventually(lambda: outbox_empty(migrated_pool), what="the relay publishing the repeat")
    finally:
        await relay.stop(grace=5.0)

    transitions = await subscribe(nc, consumers, ALARM_CHANNEL, read_transition, "alarm-test")
    floods = await subscribe(nc, consumers, FLOOD_CHANNEL, read_flood, "flood-test")
    await eventually(lambda: _truthy(transitions.items and floods.items), what="both consumers")
    await eventually(lambda: settled(nc, "alarm-test"), what="every transition delivered and acked")

    assert (await nc.jetstream().stream_info(ALARMS.name)).state.messages == 2

    assert len(transitions.items) == 1  # JetStream dropped the repeat by its Nats-Msg-Id
    transition, alarm = transitions.items[0]
    assert transition == RAISED
    assert transition_id(transition) == first.headers[MSG_ID]
    assert alarm == AlarmView.after(RAISED, RULE)
    assert floods.items == [FLOOD]  # and no flood reached the consumer of alarm.>


async def test_a_publisher_for_one_channel_refuses_the_others_subjects(
    nc: NATS, publisher: JetStreamPublisher
) -> None:
    await create_alarms_stream(nc)
    alarms = ChannelPublisher(ALARM_CHANNEL, publisher)
    floods = ChannelPublisher(FLOOD_CHANNEL, publisher)

    await alarms.publish([transition_message(RAISED, AlarmView.after(RAISED, RULE))])
    await floods.publish([flood_message(FLOOD)])
    with pytest.raises(ValueError, match="not a subject of ALARMS"):
        await alarms.publish([flood_message(FLOOD)])
    with pytest.raises(ValueError, match="not a subject of ALARMS"):
        await floods.publish([transition_message(RAISED, AlarmView.after(RAISED, RULE))])
    # Per-site filtering works on the tokens: one subject per alarm point of that site.
    info = await nc.jetstream().stream_info(
        ALARMS.name, subjects_filter="alarm.ulsan-refining.ulsan-refinery.>"
    )
    assert info.state.subjects == {"alarm.ulsan-refining.ulsan-refinery.gd-fcc2-203--h2s-high-high": 1}


async def stream_holds(nc: NATS, count: int) -> bool:
    info = await nc.jetstream().stream_info(ALARMS.name)
    return int(info.state.messages) >= count


async def settled(nc: NATS, durable: str) -> bool:
    info = await nc.jetstream().consumer_info(ALARMS.name, durable)
    return info.num_pending == 0 and info.num_ack_pending == 0


async def outbox_empty(pool: asyncpg.Pool) -> bool:
    return int(await pool.fetchval("SELECT count(*) FROM outbox WHERE service = 'alarms'")) == 0


async def _truthy(value: object) -> bool:
    return bool(value)
