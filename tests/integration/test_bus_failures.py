"""What the bus says when JetStream refuses: publish refusals with their codes, a durable that
cannot be created or updated, a lag probe that fails. Against a real nats-server.

Each test makes its own stream (not the hub's), so the limits it sets belong to it alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, DiscardPolicy, StreamConfig
from nats.js.errors import NotFoundError
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from services.common.bus.connection import connect_bus
from services.common.bus.consumer import ConsumerSpec, DurableConsumer, Rejection
from services.common.bus.publisher import JetStreamPublisher, OutgoingMessage, PublishRejected
from services.common.contracts.cloudevents import MSG_ID
from tests.conftest import eventually
from tests.integration.conftest import started_publisher

pytestmark = pytest.mark.integration

STREAM = "BUSFAILURES"
DURABLE = "bus-failures"


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc: NATS = await connect_bus(nats_url, name="test-bus-failures")
    js = nc.jetstream()
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(STREAM)
    # One message per subject, refusing the next: the refusal a full stream gives.
    await js.add_stream(
        StreamConfig(
            name=STREAM,
            subjects=["failures.>"],
            max_msgs_per_subject=1,
            discard=DiscardPolicy.NEW,
            discard_new_per_subject=True,
        )
    )
    yield js
    with contextlib.suppress(Exception):
        await js.delete_stream(STREAM)
    await nc.close()


@pytest.fixture
async def publisher(js: JetStreamContext) -> AsyncIterator[JetStreamPublisher]:
    async with started_publisher(js._nc) as pub:
        yield pub


def message(subject: str, n: int) -> OutgoingMessage:
    return OutgoingMessage(subject, f"item-{n}".encode(), {MSG_ID: f"failures-{n}"})


# --- publish refusals ------------------------------------------------------------------------


async def test_a_refusal_by_a_full_stream_carries_its_codes_and_stream(publisher: JetStreamPublisher) -> None:
    await publisher.publish([message("failures.a", 1)])

    with pytest.raises(PublishRejected) as info:
        await publisher.publish([message("failures.b", 2), message("failures.a", 3)])

    err = info.value
    assert (err.code, err.err_code, err.stream, err.subject) == (503, 10077, STREAM, "failures.a")
    assert err.description == "maximum messages per subject exceeded"
    assert (err.refused, err.total) == (1, 2)
    assert str(err).startswith("1 of 2 refused: failures.a: stream BUSFAILURES: maximum messages")


async def test_a_subject_no_stream_takes_is_refused_without_a_stream(publisher: JetStreamPublisher) -> None:
    with pytest.raises(PublishRejected) as info:
        await publisher.publish([message("nowhere.acme.refinery.gd-101", 1)])

    err = info.value
    assert (err.code, err.err_code, err.stream, err.subject) == (
        503,
        None,
        None,
        "nowhere.acme.refinery.gd-101",
    )
    assert "no stream takes the subject" in err.description


# --- the durable consumer --------------------------------------------------------------------


async def nothing(items: list[str]) -> Sequence[Rejection]:
    return ()


def spec(stream: str = STREAM) -> ConsumerSpec:
    return ConsumerSpec(stream=stream, durable=DURABLE, filter_subject="failures.>", ack_wait=2.0)


def text(msg: Msg) -> str:
    return msg.data.decode()


@pytest.fixture
async def consumers() -> AsyncIterator[list[DurableConsumer[Any]]]:
    started: list[DurableConsumer[Any]] = []
    yield started
    for consumer in started:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(consumer.stop(grace=1.0), timeout=5.0)


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def test_a_durable_whose_config_cannot_change_is_kept_and_says_what_differs(
    js: JetStreamContext, consumers: list[DurableConsumer[Any]]
) -> None:
    # An earlier version created the durable delivering only new messages; JetStream cannot
    # change the deliver policy in place.
    await js.add_consumer(
        STREAM,
        ConsumerConfig(
            durable_name=DURABLE,
            deliver_group=DURABLE,
            deliver_subject=f"_deliver.{DURABLE}",
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=2.0,
            max_ack_pending=10_000,
            filter_subject="failures.>",
        ),
    )
    consumer = DurableConsumer[str](js, spec(), text, nothing)
    with capture_logs() as logs:
        await consumer.start()
    consumers.append(consumer)

    [kept] = events(logs, "consumer_config_kept")
    assert kept["differs"] == ["deliver_policy"]
    assert kept["err_code"] == 10012
    assert "deliver policy" in kept["error"]


async def test_a_durable_that_cannot_be_created_fails_the_start_and_is_not_called_kept(
    js: JetStreamContext,
) -> None:
    consumer = DurableConsumer[str](js, spec(stream="NOSUCHSTREAM"), text, nothing)
    with capture_logs() as logs, pytest.raises(NotFoundError):
        await consumer.start()

    assert not events(logs, "consumer_config_kept")
    [failed] = events(logs, "consumer_create_failed")
    assert (failed["stream"], failed["err_code"]) == ("NOSUCHSTREAM", 10059)


def probe_failures() -> float:
    value = REGISTRY.get_sample_value("safetyhub_consumer_lag_probe_failures_total", {"consumer": DURABLE})
    return value or 0.0


async def test_a_failing_lag_probe_is_counted_and_logged_once(
    js: JetStreamContext, consumers: list[DurableConsumer[Any]]
) -> None:
    consumer = DurableConsumer[str](js, spec(), text, nothing)
    await consumer.start()
    consumers.append(consumer)
    before = probe_failures()

    with capture_logs() as logs:
        await js.delete_consumer(STREAM, DURABLE)  # the probe asks for a durable no longer there
        # The probe runs every 2 s: two failures take at most about 4 s.
        await eventually(_at_least(before + 2), timeout=15.0, what="two failed lag probes")

    [failed] = events(logs, "consumer_lag_probe_failed")
    assert failed["consumer"] == DURABLE
    assert "NotFoundError" in failed["error"]


def _at_least(count: float) -> Any:
    async def probe() -> bool:
        return probe_failures() >= count

    return probe
