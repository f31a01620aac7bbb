"""The unit of work and the outbox relay against real PostgreSQL and nats-server.

Each test has a stream of its own (OUTBOX_TEST, subjects `outboxtest.>`) with JetStream's
duplicate window, a fresh database with every migration, and relays stopped at its end. Relays
poll every 0.2 s besides LISTEN, so a test that waits for a publish does not depend on the poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import asyncpg
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from services.common.bus.connection import connect_bus
from services.common.bus.consumer import ConsumerSpec, DurableConsumer, Rejection
from services.common.bus.publisher import JetStreamPublisher, OutgoingMessage
from services.common.contracts.cloudevents import MSG_ID, ce_headers
from services.common.db.pool import create_pool
from services.common.embedded import EmbeddedNats
from services.common.outbox import Outbox, OutboxRelay, RelayConfig, UnitOfWork
from services.common.outbox.relay import lock_key
from services.common.outbox.unit_of_work import wake_on_commit
from tests.conftest import REPO, eventually, reachable_temp_dir
from tests.integration.conftest import started_publisher
from tests.integration.outbox_child import SERVICE as CHILD_SERVICE

pytestmark = pytest.mark.integration

STREAM = "OUTBOX_TEST"
PREFIX = "outboxtest"
SERVICE = "alarms"
FAST = RelayConfig(poll_interval=0.2, standby_interval=0.1)


@dataclass
class Bus:
    nc: NATS
    js: JetStreamContext


async def make_stream(js: JetStreamContext) -> None:
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(STREAM)
    await js.add_stream(
        StreamConfig(name=STREAM, subjects=[f"{PREFIX}.>"], storage=StorageType.FILE, duplicate_window=120.0)
    )


@dataclass
class Servers:
    database_url: str
    nats_url: str


@pytest.fixture
def servers(database_url: str, nats_url: str) -> Servers:
    """The URLs, for what a test starts besides the fixtures (a child process, a second pool)."""
    return Servers(database_url, nats_url)


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    nc = await connect_bus(nats_url, name="test-outbox")
    await make_stream(nc.jetstream())
    yield Bus(nc, nc.jetstream())
    await nc.close()


@pytest.fixture
async def publisher(bus: Bus) -> AsyncIterator[JetStreamPublisher]:
    async with started_publisher(bus.nc) as pub:
        yield pub


@pytest.fixture
async def relays() -> AsyncIterator[list[OutboxRelay]]:
    started: list[OutboxRelay] = []
    yield started
    for relay in started:
        await relay.stop(grace=5.0)


def start_relay(
    started: list[OutboxRelay], pool: asyncpg.Pool, publisher: JetStreamPublisher, service: str = SERVICE
) -> OutboxRelay:
    relay = OutboxRelay(pool, publisher, service, FAST)
    relay.start()
    started.append(relay)
    return relay


def message(n: int, subject: str | None = None) -> OutgoingMessage:
    headers = ce_headers(
        id=f"m-{n}", type="org.safetyhub.alarm.raised.v1", source="/alarms", time="2026-12-01T09:00:00Z"
    )
    return OutgoingMessage(subject or f"{PREFIX}.{n % 3}", f"payload-{n}".encode(), headers)


async def stored(js: JetStreamContext) -> list[RawStreamMsg]:
    info = await js.stream_info(STREAM)
    if not info.state.messages:
        return []
    return [await js.get_msg(STREAM, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]


async def outbox_rows(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM outbox"))


def ids(messages: Sequence[RawStreamMsg]) -> list[str]:
    return [(m.headers or {})[MSG_ID] for m in messages]


async def holds(js: JetStreamContext, count: int) -> list[RawStreamMsg] | None:
    messages = await stored(js)
    return messages if len(messages) >= count else None


# --- unit of work and relay --------------------------------------------------------------------


async def test_a_commit_is_published_with_its_ids_and_headers_in_order_per_subject(
    migrated_pool: asyncpg.Pool, bus: Bus, publisher: JetStreamPublisher, relays: list[OutboxRelay]
) -> None:
    await migrated_pool.execute("CREATE TABLE alarm_state (id int PRIMARY KEY, state text)")
    start_relay(relays, migrated_pool, publisher)
    outbox = Outbox(migrated_pool, SERVICE)
    for unit in range(5):  # five units of work of 40 messages over three subjects
        async with outbox.unit_of_work() as uow:
            await uow.connection.execute("INSERT INTO alarm_state VALUES ($1, 'UNACK')", unit)
            for n in range(unit * 40, unit * 40 + 40):
                uow.emit(message(n))
            assert uow.committed_at is None
        assert uow.committed_at is not None

    messages = await eventually(lambda: holds(bus.js, 200), what="200 messages on the stream")
    assert sorted(ids(messages)) == sorted(f"m-{n}" for n in range(200))
    for subject in (f"{PREFIX}.0", f"{PREFIX}.1", f"{PREFIX}.2"):
        numbers = [int(m.data.decode().split("-")[1]) for m in messages if m.subject == subject]
        assert numbers == sorted(numbers), f"{subject} out of order"
    first = messages[0]
    assert first.headers is not None
    assert first.headers["ce-id"] == first.headers[MSG_ID]
    assert first.headers["ce-type"] == "org.safetyhub.alarm.raised.v1"
    assert first.headers["ce-source"] == "/alarms"
    assert first.headers["ce-specversion"] == "1.0"
    await eventually(lambda: _empty(migrated_pool), what="published rows deleted from the outbox")
    assert await migrated_pool.fetchval("SELECT count(*) FROM alarm_state") == 5


async def _empty(pool: asyncpg.Pool) -> bool:
    return await outbox_rows(pool) == 0


async def test_a_rolled_back_unit_of_work_publishes_nothing_and_writes_nothing(
    migrated_pool: asyncpg.Pool, bus: Bus, publisher: JetStreamPublisher, relays: list[OutboxRelay]
) -> None:
    await migrated_pool.execute("CREATE TABLE alarm_state (id int PRIMARY KEY, state text)")
    start_relay(relays, migrated_pool, publisher)
    outbox = Outbox(migrated_pool, SERVICE)

    async def failing_rule() -> None:
        async with outbox.unit_of_work() as uow:
            await uow.connection.execute("INSERT INTO alarm_state VALUES (1, 'UNACK')")
            uow.emit(message(1))
            raise RuntimeError("rule failed")

    with pytest.raises(RuntimeError, match="rule failed"):
        await failing_rule()
    async with outbox.unit_of_work() as uow:  # a later commit: once it is out, the first would be too
        uow.emit(message(2))

    messages = await eventually(lambda: holds(bus.js, 1), what="the later message on the stream")
    await asyncio.sleep(0.3)  # one more poll of the relay, for anything that would come after
    assert ids(await stored(bus.js)) == ["m-2"]
    assert ids(messages) == ["m-2"]
    assert await migrated_pool.fetchval("SELECT count(*) FROM alarm_state") == 0


async def test_a_commit_that_emitted_wakes_its_services_relay_in_the_process_once_it_committed(
    migrated_pool: asyncpg.Pool,
) -> None:
    # The direct wake spares the relay the NOTIFY's trip through PostgreSQL and back.
    outbox = Outbox(migrated_pool, SERVICE)
    wakes: list[int] = []

    def wake() -> None:
        # Called after the commit: the row is there for the relay to read.
        wakes.append(asyncio.get_running_loop().time())

    undo = wake_on_commit(SERVICE, wake)
    other = wake_on_commit("incidents", lambda: wakes.append(-1.0))
    try:
        async with outbox.unit_of_work() as uow:
            uow.emit(message(1))
            assert wakes == []
        assert len(wakes) == 1
        assert await outbox_rows(migrated_pool) == 1

        async with outbox.unit_of_work():  # nothing emitted: nothing to publish
            pass

        async def rolled_back() -> None:
            async with outbox.unit_of_work() as uow:
                uow.emit(message(2))
                raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            await rolled_back()
        assert len(wakes) == 1
    finally:
        undo()
        other()
    async with outbox.unit_of_work() as uow:
        uow.emit(message(3))
    assert len(wakes) == 1 and -1.0 not in wakes


@pytest.mark.parametrize("chunk", [1_000, 7])
async def test_messages_committed_while_no_relay_runs_are_published_in_order_when_one_starts(
    migrated_pool: asyncpg.Pool,
    bus: Bus,
    publisher: JetStreamPublisher,
    relays: list[OutboxRelay],
    chunk: int,
) -> None:
    outbox = Outbox(migrated_pool, SERVICE)
    async with outbox.unit_of_work() as uow:
        for n in range(2_500):  # many chunks, several in flight at once: the order must hold
            uow.emit(message(n, f"{PREFIX}.one"))
    assert await outbox_rows(migrated_pool) == 2_500

    relay = OutboxRelay(migrated_pool, publisher, SERVICE, RelayConfig(chunk=chunk, window=4))
    relay.start()
    relays.append(relay)
    messages = await eventually(lambda: holds(bus.js, 2_500), what="the backlog on the stream")
    assert ids(messages) == [f"m-{n}" for n in range(2_500)]
    await eventually(lambda: _empty(migrated_pool), what="the backlog deleted")


# --- crashes -------------------------------------------------------------------------------------


async def run_child(servers: Servers, count: int, when: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.outbox_child",
        servers.database_url,
        servers.nats_url,
        f"{PREFIX}.crash",
        str(count),
        when,
        cwd=REPO,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == -signal.SIGKILL, err.decode()


async def test_a_process_killed_between_commit_and_publish_publishes_each_message_once_after_restart(
    servers: Servers,
    migrated_pool: asyncpg.Pool,
    bus: Bus,
    publisher: JetStreamPublisher,
    relays: list[OutboxRelay],
) -> None:
    await run_child(servers, 50, "commit")
    assert await stored(bus.js) == [], "the child must die before its relay published"
    assert await outbox_rows(migrated_pool) == 50

    start_relay(relays, migrated_pool, publisher, CHILD_SERVICE)
    await eventually(lambda: _empty(migrated_pool), what="the outbox published after the restart")
    await asyncio.sleep(0.3)
    messages = await stored(bus.js)
    assert sorted(ids(messages)) == sorted(f"crash-{n}" for n in range(50)), "each message exactly once"


async def test_a_process_killed_between_publish_and_delete_leaves_each_message_once_on_the_stream(
    servers: Servers,
    migrated_pool: asyncpg.Pool,
    bus: Bus,
    publisher: JetStreamPublisher,
    relays: list[OutboxRelay],
) -> None:
    await run_child(servers, 50, "publish")
    assert len(await stored(bus.js)) == 50, "the child's relay published before it died"
    assert await outbox_rows(migrated_pool) == 50, "and died before deleting the rows"

    start_relay(relays, migrated_pool, publisher, CHILD_SERVICE)
    await eventually(lambda: _empty(migrated_pool), what="the rows published again and deleted")
    messages = await stored(bus.js)
    assert sorted(ids(messages)) == sorted(f"crash-{n}" for n in range(50)), "JetStream dropped the repeats"


# --- leadership and failures ---------------------------------------------------------------------


async def test_one_relay_per_service_publishes_and_another_takes_over_when_it_stops(
    servers: Servers,
    migrated_pool: asyncpg.Pool,
    bus: Bus,
    publisher: JetStreamPublisher,
    relays: list[OutboxRelay],
) -> None:
    # A second process: its own pool and NATS connection.
    pool_b = await create_pool(servers.database_url, min_size=1, max_size=3)
    nc_b = await connect_bus(servers.nats_url, name="test-outbox-b")
    publisher_b = JetStreamPublisher(nc_b)
    await publisher_b.start()
    try:
        first = start_relay(relays, migrated_pool, publisher)
        await eventually(lambda: _true(first.leading), what="the first relay leading")
        second = start_relay(relays, pool_b, publisher_b)
        other = start_relay(relays, migrated_pool, publisher, "incidents")  # another service leads too
        await eventually(lambda: _true(other.leading), what="another service's relay leading")

        outbox = Outbox(migrated_pool, SERVICE)
        for n in range(100):
            async with outbox.unit_of_work() as uow:
                uow.emit(message(n))
                assert first.leading and not second.leading
        await eventually(lambda: holds(bus.js, 100), what="100 messages")

        await first.stop()
        await eventually(lambda: _true(second.leading), timeout=5.0, what="the standby taking over")
        for n in range(100, 150):
            async with Outbox(pool_b, SERVICE).unit_of_work() as uow:
                uow.emit(message(n))
        messages = await eventually(lambda: holds(bus.js, 150), what="150 messages")
        assert sorted(ids(messages)) == sorted(f"m-{n}" for n in range(150))
    finally:
        for relay in relays:
            await relay.stop()
        await publisher_b.close()
        await nc_b.close()
        await pool_b.close()


async def _true(value: bool) -> bool:
    return value


async def test_a_relay_whose_database_connection_is_killed_takes_the_lead_again(
    migrated_pool: asyncpg.Pool, bus: Bus, publisher: JetStreamPublisher, relays: list[OutboxRelay]
) -> None:
    relay = start_relay(relays, migrated_pool, publisher)
    await eventually(lambda: _true(relay.leading), what="the relay leading")
    classid, objid = lock_key(SERVICE)
    holder = await migrated_pool.fetchval(
        "SELECT pid FROM pg_locks"
        " WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND objsubid = 2",
        classid,
        objid & 0xFFFF_FFFF,
    )
    assert holder is not None, "the leader holds its service's advisory lock"
    assert await migrated_pool.fetchval("SELECT pg_terminate_backend($1)", holder)

    async with Outbox(migrated_pool, SERVICE).unit_of_work() as uow:
        uow.emit(message(1))
    await eventually(lambda: holds(bus.js, 1), what="publishing after the relay reconnected")


async def test_messages_committed_while_nats_is_down_are_published_once_it_is_back(
    migrated_pool: asyncpg.Pool, relays: list[OutboxRelay]
) -> None:
    data = reachable_temp_dir("safetyhub-outbox-down-")
    server = EmbeddedNats(data)
    url = await server.start()
    port = int(url.rsplit(":", 1)[1])
    nc = await connect_bus(url, name="test-outbox-down")
    pub = JetStreamPublisher(nc, ack_timeout=1.0)
    try:
        js = nc.jetstream()
        await make_stream(js)
        await pub.start()
        start_relay(relays, migrated_pool, pub)
        outbox = Outbox(migrated_pool, SERVICE)
        async with outbox.unit_of_work() as uow:
            uow.emit(message(1))
        await eventually(lambda: holds(js, 1), what="the first message")

        await server.stop()
        for n in range(2, 12):
            async with outbox.unit_of_work() as uow:  # commits do not need NATS
                uow.emit(message(n))
        await asyncio.sleep(1.0)  # the relay fails and backs off meanwhile
        assert await outbox_rows(migrated_pool) == 10

        server = EmbeddedNats(data, port=port)
        await server.start()

        async def backlog_out() -> list[RawStreamMsg] | None:
            with contextlib.suppress(Exception):  # our own connection may not be back yet
                return await holds(js, 11)
            return None

        messages = await eventually(backlog_out, timeout=20.0, what="the backlog after the restart")
        assert ids(messages) == [f"m-{n}" for n in range(1, 12)]
        await eventually(lambda: _empty(migrated_pool), what="the backlog deleted")
    finally:
        for relay in relays:
            await relay.stop()
        relays.clear()
        await pub.close()
        await nc.close()
        await server.stop()
        shutil.rmtree(data, ignore_errors=True)


# --- consumers in units of work ------------------------------------------------------------------

DURABLE = "alarms-test"


def text(msg: Msg) -> str:
    return msg.data.decode()


@dataclass
class AlarmHandler:
    """Counts each input in a table and emits one output per input; fails once on `fail_once`."""

    fail_once: set[str]
    calls: list[list[str]]

    async def __call__(self, items: list[str], uow: UnitOfWork) -> Sequence[Rejection]:
        self.calls.append(list(items))
        for item in items:
            await uow.connection.execute(
                "INSERT INTO handled (item, times) VALUES ($1, 1)"
                " ON CONFLICT (item) DO UPDATE SET times = handled.times + 1",
                item,
            )
            headers = ce_headers(
                id=f"out-{item}", type="org.safetyhub.test.v1", source="/t", time="2026-12-01T00:00:00Z"
            )
            uow.emit(OutgoingMessage(f"{PREFIX}.out.{item}", item.encode(), headers))
        for item in items:
            if item in self.fail_once:
                self.fail_once.discard(item)
                raise RuntimeError(f"handler failed on {item}")
        return ()


async def start_alarm_consumer(bus: Bus, pool: asyncpg.Pool, handler: AlarmHandler) -> DurableConsumer[str]:
    await pool.execute("CREATE TABLE handled (item text PRIMARY KEY, times int NOT NULL)")
    spec = ConsumerSpec(stream=STREAM, durable=DURABLE, filter_subject=f"{PREFIX}.in.>", ack_wait=2.0)
    consumer = DurableConsumer.in_units_of_work(bus.js, spec, text, handler, Outbox(pool, SERVICE))
    await consumer.start()
    return consumer


async def publish_inputs(publisher: JetStreamPublisher, names: Sequence[str]) -> None:
    await publisher.publish(
        [OutgoingMessage(f"{PREFIX}.in.{name}", name.encode(), {MSG_ID: f"in-{name}"}) for name in names]
    )


async def settled(js: JetStreamContext) -> bool:
    info = await js.consumer_info(STREAM, DURABLE)
    return info.num_pending == 0 and info.num_ack_pending == 0


async def handled(pool: asyncpg.Pool) -> dict[str, int]:
    return {r["item"]: r["times"] for r in await pool.fetch("SELECT item, times FROM handled")}


async def outputs(js: JetStreamContext) -> list[str]:
    return sorted(m.data.decode() for m in await stored(js) if m.subject.startswith(f"{PREFIX}.out."))


async def test_a_consumer_commits_state_and_messages_together_then_acks(
    migrated_pool: asyncpg.Pool, bus: Bus, publisher: JetStreamPublisher, relays: list[OutboxRelay]
) -> None:
    start_relay(relays, migrated_pool, publisher)
    handler = AlarmHandler(fail_once=set(), calls=[])
    consumer = await start_alarm_consumer(bus, migrated_pool, handler)
    try:
        names = [f"a{n}" for n in range(20)]
        await publish_inputs(publisher, names)
        await eventually(lambda: settled(bus.js), what="every input acked")
        assert await handled(migrated_pool) == dict.fromkeys(names, 1)

        async def all_out() -> bool:
            return await outputs(bus.js) == sorted(names)

        await eventually(all_out, what="one output per input on the stream")
        info = await bus.js.consumer_info(STREAM, DURABLE)
        assert info.num_redelivered == 0
    finally:
        await consumer.stop(grace=2.0)


async def test_a_failing_handler_rolls_back_state_and_messages_and_the_input_is_redelivered(
    migrated_pool: asyncpg.Pool, bus: Bus, publisher: JetStreamPublisher, relays: list[OutboxRelay]
) -> None:
    start_relay(relays, migrated_pool, publisher)
    handler = AlarmHandler(fail_once={"b3"}, calls=[])
    consumer = await start_alarm_consumer(bus, migrated_pool, handler)
    try:
        names = [f"b{n}" for n in range(6)]
        await publish_inputs(publisher, names)

        async def all_handled() -> bool:
            return len(await handled(migrated_pool)) == 6 and await settled(bus.js)

        await eventually(all_handled, what="every input handled after the redelivery")
        # b3's failed attempt wrote its row and emitted its output: both rolled back, so it counts once.
        assert await handled(migrated_pool) == dict.fromkeys(names, 1)
        assert sum(call.count("b3") for call in handler.calls) >= 2, "b3 was delivered again"

        async def all_out() -> bool:
            return await outputs(bus.js) == sorted(names)

        await eventually(all_out, what="one output per input")
        await asyncio.sleep(0.3)
        assert await outputs(bus.js) == sorted(names), "no output of the failed attempt"
    finally:
        await consumer.stop(grace=2.0)


async def test_a_message_already_processed_is_acked_without_running_the_handler_again(
    migrated_pool: asyncpg.Pool, bus: Bus, publisher: JetStreamPublisher
) -> None:
    handler = AlarmHandler(fail_once=set(), calls=[])
    # As if c1 was processed and committed, and the process died before its ack.
    await migrated_pool.execute(
        "INSERT INTO processed_messages (consumer, message_id, service) VALUES ($1, 'in-c1', $2)",
        DURABLE,
        SERVICE,
    )
    consumer = await start_alarm_consumer(bus, migrated_pool, handler)
    try:
        await publish_inputs(publisher, ["c1", "c2"])
        await eventually(lambda: settled(bus.js), what="both inputs acked")
        assert await handled(migrated_pool) == {"c2": 1}
        assert all("c1" not in call for call in handler.calls)
    finally:
        await consumer.stop(grace=2.0)
