"""The bus against a real nats-server: streams, acknowledged publishing, the durable consumer.

Each test starts with no stream on the server (the `nats_url` fixture), so stream counts and
consumer state belong to the test alone. Consumers run with a short ack_wait and nak delays of
0.5 s (the first step of `retry_delay`), so redelivery shows up in about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from services.common.bus.connection import connect_bus
from services.common.bus.consumer import ConsumerSpec, DurableConsumer, Poison, Rejection, Released
from services.common.bus.deadletter import CONSUMER_HEADER, REASON_HEADER, SEQUENCE_HEADER, SUBJECT_HEADER
from services.common.bus.publisher import JetStreamPublisher, OutgoingMessage, PublishRejected
from services.common.bus.streams import DEADLETTER, ensure_streams
from services.common.contracts.cloudevents import MSG_ID
from services.common.embedded import EmbeddedNats
from services.common.errors import UnavailableError
from services.common.settings import StreamConfig
from services.ingest.channel import OBSERVATIONS as OBSERVATIONS_STREAM
from services.ingest.domain.contract import ObservationIn
from services.ingest.encode import to_message
from services.store.rows import Row, observation_rows
from tests.conftest import eventually, hub_streams, reachable_temp_dir
from tests.integration.conftest import started_publisher

pytestmark = pytest.mark.integration

DURABLE = "bus-test"
ACK_WAIT = 2.0
OBSERVATIONS = OBSERVATIONS_STREAM.name


@dataclass
class Bus:
    nc: NATS
    js: JetStreamContext


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    nc = await connect_bus(nats_url, name="test-bus")
    js = nc.jetstream()
    await ensure_streams(js, hub_streams())
    yield Bus(nc, js)
    await nc.close()


@pytest.fixture
async def publisher(bus: Bus) -> AsyncIterator[JetStreamPublisher]:
    async with started_publisher(bus.nc) as pub:
        yield pub


def message(n: int, *, device: str = "gd-101", payload: bytes | None = None) -> OutgoingMessage:
    """A message in OBSERVATIONS with its own dedup id; the payload names it unless given."""
    body = payload if payload is not None else f"item-{n}".encode()
    return OutgoingMessage(f"obs.acme.refinery.{device}", body, {MSG_ID: f"msg-{n}"})


def observation(n: int) -> OutgoingMessage:
    """A real observation message, as ingest publishes it."""
    item = ObservationIn(site="refinery", device="gd-101", kind="gas.h2s", id=f"obs-{n}", value=float(n))
    return to_message(item, tenant="acme", source="test", received=datetime.now(UTC))


async def stream_count(js: JetStreamContext, stream: str) -> int:
    info = await js.stream_info(stream)
    return int(info.state.messages)


async def deadletters(js: JetStreamContext) -> list[RawStreamMsg]:
    info = await js.stream_info(DEADLETTER)
    if not info.state.messages:
        return []
    return [await js.get_msg(DEADLETTER, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]


def text(msg: Msg) -> str:
    return msg.data.decode()


@dataclass
class Recorder:
    """A handler that records what it was given and when; subclasses decide what fails."""

    batches: list[list[str]] = field(default_factory=list)
    handled: list[str] = field(default_factory=list)
    seen_at: dict[str, list[float]] = field(default_factory=dict)

    async def __call__(self, items: list[str]) -> Sequence[Rejection]:
        now = asyncio.get_running_loop().time()
        self.batches.append(list(items))
        for item in items:
            self.seen_at.setdefault(item, []).append(now)
        rejections = await self.outcome(items)
        rejected = {r.index for r in rejections}
        self.handled.extend(item for i, item in enumerate(items) if i not in rejected)
        return rejections

    async def outcome(self, items: list[str]) -> Sequence[Rejection]:
        return ()


@pytest.fixture
async def consumers(bus: Bus) -> AsyncIterator[list[DurableConsumer[Any]]]:
    """Consumers started by a test, stopped at its end even when it fails."""
    started: list[DurableConsumer[Any]] = []
    yield started
    for consumer in started:
        # Bounded: stop() can hang (see test_stop_returns_even_when_the_lag_probe_was_just_answered),
        # and that bug must fail its own test, not stall every other one for pytest's timeout.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(consumer.stop(grace=1.0), timeout=5.0)


async def start_consumer(
    bus: Bus,
    started: list[DurableConsumer[Any]],
    handler: Recorder,
    *,
    decode: Callable[[Msg], str] = text,
    poison_after: int = 5,
    batch_max: int = 5_000,
    batch_max_bytes: int = 4 * 1024 * 1024,
    batch_wait: float = 0.02,
    ack_wait: float = ACK_WAIT,
) -> DurableConsumer[str]:
    spec = ConsumerSpec(
        stream=OBSERVATIONS,
        durable=DURABLE,
        filter_subject="obs.>",
        batch_max=batch_max,
        batch_max_bytes=batch_max_bytes,
        batch_wait=batch_wait,
        ack_wait=ack_wait,
        poison_after=poison_after,
    )
    consumer = DurableConsumer[str](bus.js, spec, decode, handler)
    await consumer.start()
    started.append(consumer)
    return consumer


async def all_settled(bus: Bus) -> bool:
    info = await bus.js.consumer_info(OBSERVATIONS, DURABLE)
    return info.num_ack_pending == 0 and info.num_pending == 0


# --- streams ---------------------------------------------------------------------------------


async def test_ensure_streams_is_idempotent_and_applies_changed_limits(bus: Bus) -> None:
    first = StreamConfig(max_age_hours=1.0, max_bytes_mb=64)
    await ensure_streams(bus.js, hub_streams(observations=first))
    await bus.js.publish("obs.acme.refinery.gd-101", b"kept across restarts")

    changed = StreamConfig(max_age_hours=2.0, max_bytes_mb=128)
    await ensure_streams(bus.js, hub_streams(observations=changed))
    await ensure_streams(bus.js, hub_streams(observations=changed))

    info = await bus.js.stream_info(OBSERVATIONS)
    assert info.config.max_age == pytest.approx(2 * 3600.0)
    assert info.config.max_bytes == 128 * 1024 * 1024
    assert info.config.subjects == ["obs.>"]
    assert info.state.messages == 1, "updating the limits must not drop what the stream holds"

    dead = await bus.js.stream_info(DEADLETTER)
    assert dead.config.subjects == ["deadletter.>"]
    assert dead.config.max_age == pytest.approx(14 * 24 * 3600.0)


# --- publisher -------------------------------------------------------------------------------


@pytest.mark.parametrize("max_in_flight", [20_000, 1_000], ids=["one-window", "split-into-windows"])
async def test_a_batch_of_5000_is_acknowledged_and_stored(bus: Bus, max_in_flight: int) -> None:
    pub = JetStreamPublisher(bus.nc, max_in_flight=max_in_flight, ack_timeout=5.0)
    await pub.start()
    try:
        await pub.publish([message(n, device=f"gd-{n % 10}") for n in range(5_000)])
    finally:
        await pub.close()

    assert await stream_count(bus.js, OBSERVATIONS) == 5_000
    assert pub.in_flight == 0


async def test_the_same_msg_id_published_twice_is_stored_once(
    bus: Bus, publisher: JetStreamPublisher
) -> None:
    await publisher.publish([message(1)])
    await publisher.publish([message(1)])  # a client retry: acknowledged as a duplicate, not an error
    await publisher.publish([message(1), message(2)])

    assert await stream_count(bus.js, OBSERVATIONS) == 2


async def test_a_subject_no_stream_covers_is_rejected(publisher: JetStreamPublisher) -> None:
    stray = OutgoingMessage("nowhere.acme.refinery.gd-101", b"x", {MSG_ID: "stray-1"})

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(PublishRejected, match="1 of 3 refused"):
        await publisher.publish([message(1), stray, message(2)])
    # Refused by the server's "no responders" at once, not after waiting out the ack timeout.
    assert loop.time() - started < 1.0
    assert publisher.in_flight == 0


async def test_publishing_after_the_connection_closed_fails_fast(bus: Bus) -> None:
    # Its own publisher: the fixture's would be closed after the connection, which is not the
    # hub's shutdown order (publisher first, then drain).
    publisher = JetStreamPublisher(bus.nc, ack_timeout=5.0)
    await publisher.start()
    await bus.nc.close()

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(UnavailableError):
        await publisher.publish([message(1)])
    assert loop.time() - started < 2.0


async def test_publishing_while_nats_is_down_fails_within_the_ack_timeout_and_recovers() -> None:
    data = reachable_temp_dir("safetyhub-bus-down-")
    server = EmbeddedNats(data)
    url = await server.start()
    port = int(url.rsplit(":", 1)[1])
    nc = await connect_bus(url, name="test-bus-down")
    pub = JetStreamPublisher(nc, ack_timeout=1.0)
    try:
        await ensure_streams(nc.jetstream(), hub_streams())
        await pub.start()
        await pub.publish([message(1)])

        await server.stop()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(UnavailableError):
            await pub.publish([message(2)])
        assert loop.time() - started < 1.0 + 0.5

        # The same server back on the same port and store: the connection returns by itself.
        server = EmbeddedNats(data, port=port)
        await server.start()

        async def published() -> bool:
            try:
                await pub.publish([message(2)])
            except UnavailableError:
                return False
            return True

        await eventually(published, timeout=10.0, what="publishing to work again after NATS restarted")
        assert await stream_count(nc.jetstream(), OBSERVATIONS) == 2
    finally:
        await pub.close()
        await nc.close()
        await server.stop()
        shutil.rmtree(data, ignore_errors=True)


# --- consumer --------------------------------------------------------------------------------


async def test_published_messages_reach_the_handler_in_batches_and_are_acked(
    bus: Bus, publisher: JetStreamPublisher, consumers: list[DurableConsumer[Any]]
) -> None:
    handler = Recorder()
    await start_consumer(bus, consumers, handler, batch_max=300)
    await publisher.publish([message(n, device=f"gd-{n % 7}") for n in range(2_000)])

    async def all_handled() -> bool:
        return len(handler.handled) >= 2_000

    await eventually(all_handled, what="2,000 messages handled")
    await eventually(lambda: all_settled(bus), what="every message acked")

    assert sorted(handler.handled) == sorted(f"item-{n}" for n in range(2_000))
    assert max(len(b) for b in handler.batches) > 1, "messages must be handed over in batches"
    assert max(len(b) for b in handler.batches) <= 300
    info = await bus.js.consumer_info(OBSERVATIONS, DURABLE)
    assert info.num_redelivered == 0


class SlowRecorder(Recorder):
    """A handler taking 50 ms a batch, as a unit of work does: what arrives meanwhile waits."""

    async def outcome(self, items: list[str]) -> Sequence[Rejection]:
        await asyncio.sleep(0.05)
        return ()


async def test_without_a_batch_wait_a_lone_message_is_handled_alone_and_a_burst_still_in_batches(
    bus: Bus, publisher: JetStreamPublisher, consumers: list[DurableConsumer[Any]]
) -> None:
    # batch_wait 0: no timer holds a batch back; what arrived while the handler ran is the next one.
    handler = SlowRecorder()
    await start_consumer(bus, consumers, handler, batch_max=300, batch_wait=0.0)
    await publisher.publish([message(0, device="gd-lone")])
    await eventually(lambda: _handled(handler, 1), what="the lone message handled")
    assert handler.batches == [["item-0"]]

    burst = [message(n, device=f"gd-{n % 7}") for n in range(1, 2_001)]
    await asyncio.gather(*(publisher.publish(burst[i : i + 100]) for i in range(0, 2_000, 100)))
    await eventually(lambda: _handled(handler, 2_001), what="the burst handled")
    await eventually(lambda: all_settled(bus), what="every message acked")

    assert sorted(handler.handled) == sorted(f"item-{n}" for n in range(2_001))
    sizes = [len(b) for b in handler.batches[1:]]
    assert max(sizes) <= 300
    # 2,000 messages one by one would take 100 s of 50 ms handler calls; batches keep up.
    assert len(sizes) < 100, f"the burst was handled in {len(sizes)} batches"


async def _handled(handler: Recorder, count: int) -> bool:
    return len(handler.handled) >= count


async def test_batches_are_also_cut_by_payload_bytes(
    bus: Bus, publisher: JetStreamPublisher, consumers: list[DurableConsumer[Any]]
) -> None:
    # Messages of 10 kB (a device's many readings): at most 5 fit the 50 kB bound of one batch.
    handler = Recorder()
    await start_consumer(bus, consumers, handler, batch_max=1_000, batch_max_bytes=50_000)
    pad = b" " * 10_000
    await publisher.publish([message(n, payload=f"item-{n}".encode() + pad) for n in range(100)])

    async def all_handled() -> bool:
        return len(handler.handled) >= 100

    await eventually(all_handled, what="100 messages handled")
    await eventually(lambda: all_settled(bus), what="every message acked")

    assert sorted(h.strip() for h in handler.handled) == sorted(f"item-{n}" for n in range(100))
    assert max(len(b) for b in handler.batches) <= 5
    assert max(len(b) for b in handler.batches) > 1


async def test_an_undecodable_message_is_deadlettered_and_the_rest_are_handled(
    bus: Bus, publisher: JetStreamPublisher, consumers: list[DurableConsumer[Any]]
) -> None:
    rows: list[Row] = []

    async def store(batch: list[list[Row]]) -> Sequence[Rejection]:
        rows.extend(row for message in batch for row in message)
        return ()

    spec = ConsumerSpec(
        stream=OBSERVATIONS, durable=DURABLE, filter_subject="obs.>", batch_wait=0.02, ack_wait=ACK_WAIT
    )
    consumer = DurableConsumer[list[Row]](bus.js, spec, observation_rows, store)
    await consumer.start()
    consumers.append(consumer)

    garbage = OutgoingMessage("obs.acme.refinery.gd-101", b"\xff\xfe not a protobuf", {MSG_ID: "garbage"})
    await publisher.publish([observation(1), observation(2), garbage, observation(3), observation(4)])

    async def four_stored() -> bool:
        return len(rows) >= 4

    await eventually(four_stored, what="the good observations around the bad one")
    dead = await eventually(lambda: deadletters(bus.js), what="a dead letter")
    await eventually(lambda: all_settled(bus), what="every message acked or terminated")

    assert sorted(str(r[0]) for r in rows) == ["obs-1", "obs-2", "obs-3", "obs-4"]
    assert len(dead) == 1
    letter = dead[0]
    assert letter.subject == f"deadletter.{DURABLE}.obs.acme.refinery.gd-101"
    assert letter.data == b"\xff\xfe not a protobuf"
    assert letter.headers is not None
    assert "not an ObservationBatch protobuf" in letter.headers[REASON_HEADER]
    assert letter.headers[CONSUMER_HEADER] == DURABLE
    assert letter.headers[SUBJECT_HEADER] == "obs.acme.refinery.gd-101"
    assert letter.headers[SEQUENCE_HEADER] == "3"


async def test_a_rejected_item_is_deadlettered_alone(
    bus: Bus, publisher: JetStreamPublisher, consumers: list[DurableConsumer[Any]]
) -> None:
    class RejectsItem5(Recorder):
        async def outcome(self, items: list[str]) -> Sequence[Rejection]:
            return [Rejection(i, "value out of range") for i, item in enumerate(items) if item == "item-5"]

    handler = RejectsItem5()
    await start_consumer(bus, consumers, handler)
    await publisher.publish([message(n) for n in range(10)])

    dead = await eventually(lambda: deadletters(bus.js), what="the rejected item dead-lettered")
    await eventually(lambda: all_settled(bus), what="every message acked or terminated")

    assert sorted(handler.handled) == sorted(f"item-{n}" for n in range(10) if n != 5)
    assert [(d.data, d.headers and d.headers[REASON_HEADER]) for d in dead] == [
        (b"item-5", "value out of range")
    ]
    info = await bus.js.consumer_info(OBSERVATIONS, DURABLE)
    assert info.num_redelivered == 0, "neither the handled nor the rejected items come back"


async def test_an_unavailable_handler_gets_the_same_items_again_after_the_nak_delay(
    bus: Bus, publisher: JetStreamPublisher, consumers: list[DurableConsumer[Any]]
) -> None:
    class DatabaseDownOnce(Recorder):
        failed: list[str] | None = None

        async def outcome(self, items: list[str]) -> Sequence[Rejection]:
            if self.failed is None:
                self.failed = list(items)
                raise UnavailableError("database restarting")
            return ()

    handler = DatabaseDownOnce()
    await start_consumer(bus, consumers, handler)
    await publisher.publish([message(n) for n in range(20)])

    async def all_handled() -> bool:
        return len(set(handler.handled)) >= 20

    await eventually(all_handled, what="every item handled after the failure")
    await eventually(lambda: all_settled(bus), what="every message acked")

    assert handler.failed
    assert set(handler.failed) <= set(handler.handled), "the items of the failed batch come again"
    assert sorted(handler.handled) == sorted(f"item-{n}" for n in range(20)), "handled once each after"
    for item in handler.failed:
        first, second = handler.seen_at[item][:2]
        # The first back-off step is 0.5 s: a redelivery sooner would hammer a database that is down.
        assert second - first >= 0.4, "redelivered only after the nak delay"
    assert await deadletters(bus.js) == []


async def test_an_item_that_keeps_crashing_the_handler_is_isolated_and_deadlettered(
    bus: Bus, publisher: JetStreamPublisher, consumers: list[DurableConsumer[Any]]
) -> None:
    class CrashesOnItem3(Recorder):
        async def outcome(self, items: list[str]) -> Sequence[Rejection]:
            if "item-3" in items:
                raise RuntimeError("bug triggered by item-3")
            return ()

    handler = CrashesOnItem3()
    await start_consumer(bus, consumers, handler, poison_after=2)
    await publisher.publish([message(n) for n in range(8)])

    dead = await eventually(lambda: deadletters(bus.js), what="item-3 dead-lettered")
    await eventually(lambda: all_settled(bus), what="every message acked or terminated")

    # Every other item was handled (delivery is at least once: on a loaded machine an ack can
    # arrive after ack_wait and an item come back; effects are idempotent per id for that).
    assert set(handler.handled) == {f"item-{n}" for n in range(8) if n != 3}
    assert len(dead) == 1
    assert dead[0].data == b"item-3"
    assert dead[0].headers is not None
    assert dead[0].headers[REASON_HEADER] == "handler failed 2 times; see logs"
    # Alone, item-3 was tried once per delivery: twice, then given up.
    assert [b for b in handler.batches if b == ["item-3"]] == [["item-3"], ["item-3"]]


async def test_unacked_messages_go_to_the_next_consumer_with_the_same_durable(
    bus: Bus, publisher: JetStreamPublisher, consumers: list[DurableConsumer[Any]]
) -> None:
    class Hangs(Recorder):
        async def outcome(self, items: list[str]) -> Sequence[Rejection]:
            await asyncio.Event().wait()  # a process wedged mid-batch, never committing
            return ()

    hung = Hangs()
    first = await start_consumer(bus, consumers, hung)
    await publisher.publish([message(n) for n in range(5)])

    async def all_in_hand() -> bool:
        return sum(len(b) for b in hung.batches) >= 5

    await eventually(all_in_hand, what="the first consumer to hold all five")
    await asyncio.wait_for(first.stop(grace=0.2), timeout=5.0)
    consumers.remove(first)

    successor = Recorder()
    await start_consumer(bus, consumers, successor)

    async def all_handled() -> bool:
        return len(successor.handled) >= 5

    await eventually(all_handled, timeout=ACK_WAIT + 10, what="redelivery to the successor")
    await eventually(lambda: all_settled(bus), what="every message acked")
    assert sorted(successor.handled) == [f"item-{n}" for n in range(5)]
    assert hung.handled == []


async def test_what_a_handler_released_goes_back_at_once_in_stream_order_before_newer_messages(
    bus: Bus, publisher: JetStreamPublisher, consumers: list[DurableConsumer[Any]]
) -> None:
    class Releases(Recorder):
        async def outcome(self, items: list[str]) -> Sequence[Rejection]:
            raise Released("another process does this work now")

    # A long ack wait: the successor gets them because they were given back, not because
    # JetStream gave up waiting.
    first = await start_consumer(bus, consumers, Releases(), batch_max=3, ack_wait=60.0)
    await publisher.publish([message(n) for n in range(10)])

    async def all_delivered() -> bool:
        info = await bus.js.consumer_info(OBSERVATIONS, DURABLE)
        return info.num_ack_pending == 10 and info.num_pending == 0

    await eventually(all_delivered, what="the first consumer to be delivered all ten")
    await asyncio.wait_for(first.stop(grace=1.0, release=True), timeout=5.0)
    consumers.remove(first)
    await publisher.publish([message(n) for n in range(10, 15)])

    successor = Recorder()
    await start_consumer(bus, consumers, successor, ack_wait=60.0)

    async def all_handled() -> bool:
        return len(successor.handled) >= 15

    await eventually(all_handled, timeout=15, what="the released messages and the newer ones")
    # The batch the handler gave up (the first three) and the rest of what was delivered, in
    # stream order, then what came after.
    assert successor.handled == [f"item-{n}" for n in range(15)]


async def test_stop_finishes_the_batch_in_hand_so_nothing_is_redelivered(
    bus: Bus, publisher: JetStreamPublisher, consumers: list[DurableConsumer[Any]]
) -> None:
    class Slow(Recorder):
        entered = asyncio.Event()

        async def outcome(self, items: list[str]) -> Sequence[Rejection]:
            self.entered.set()
            await asyncio.sleep(0.3)  # a database commit in progress when shutdown begins
            return ()

    handler = Slow()
    consumer = await start_consumer(bus, consumers, handler)
    await publisher.publish([message(n) for n in range(50)])
    await asyncio.wait_for(handler.entered.wait(), 10)

    await asyncio.wait_for(consumer.stop(grace=5.0), timeout=10.0)
    consumers.remove(consumer)

    await eventually(lambda: all_settled(bus), what="the batch in hand acked at stop")
    assert sorted(handler.handled) == sorted(f"item-{n}" for n in range(50))
    info = await bus.js.consumer_info(OBSERVATIONS, DURABLE)
    assert info.num_redelivered == 0


async def test_a_decoder_raising_poison_needs_no_handler_call(
    bus: Bus, publisher: JetStreamPublisher, consumers: list[DurableConsumer[Any]]
) -> None:
    def strict(msg: Msg) -> str:
        if not msg.data.startswith(b"item-"):
            raise Poison(f"unknown payload {msg.data[:20]!r}")
        return msg.data.decode()

    handler = Recorder()
    await start_consumer(bus, consumers, handler, decode=strict)
    await publisher.publish([message(99, payload=b"junk")])

    dead = await eventually(lambda: deadletters(bus.js), what="the junk dead-lettered")
    await eventually(lambda: all_settled(bus), what="the junk terminated")
    assert handler.batches == [], "a batch with nothing decodable never reaches the handler"
    assert dead[0].headers is not None
    assert dead[0].headers[REASON_HEADER] == "unknown payload b'junk'"


async def test_stop_returns_even_when_the_lag_probe_was_just_answered(
    bus: Bus, consumers: list[DurableConsumer[Any]]
) -> None:
    # The consumer polls consumer_info for its lag gauge. When stop() comes while that reply has
    # arrived but not yet been handed back (here: another consumer_info answered in the same
    # read, as a monitoring probe would be), the cancellation must still end the poller, or the
    # hub's shutdown waits forever. A few rounds make the timing likely; one hang fails.
    for attempt in range(20):
        consumer = await start_consumer(bus, consumers, Recorder())
        await bus.js.consumer_info(OBSERVATIONS, DURABLE)
        try:
            await asyncio.wait_for(consumer.stop(grace=1.0), timeout=3.0)
        except TimeoutError:
            pytest.fail(f"DurableConsumer.stop() had not returned after 3 s (round {attempt + 1})")
        consumers.remove(consumer)
