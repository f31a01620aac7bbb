"""Bridge messages handled in the same turn of the event loop travel as one bus message per
device; each message learns its own outcome; ids do not depend on what a reading travelled with."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from services.common.bus.publisher import OutgoingMessage
from services.common.contracts import ObservationBatch
from services.ingest.bridges.coalesce import Coalescer, encode_together
from services.ingest.domain.contract import ObservationIn
from services.ingest.intake import Checked

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
SITE = "ulsan-refinery"


def message(device: str, *values: float, start: int = 0) -> Checked:
    """The checked readings of one bridge message."""
    items = [
        ObservationIn(
            site=SITE, device=device, kind="gas.h2s", value=v, time=T0 + timedelta(seconds=start + n)
        )
        for n, v in enumerate(values)
    ]
    return Checked(valid=list(items), positions=list(range(len(items))))


def readings(messages: Sequence[OutgoingMessage]) -> dict[str, list[tuple[str, float]]]:
    """Per subject, the (id, value) of every observation sent."""
    out: dict[str, list[tuple[str, float]]] = {}
    for m in messages:
        batch = ObservationBatch.FromString(m.payload)
        out.setdefault(m.subject, []).extend((o.envelope.id, o.value) for o in batch.observations)
    return out


class Recorder:
    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[Sequence[OutgoingMessage]] = []
        self.fail = fail

    async def __call__(self, messages: Sequence[OutgoingMessage]) -> None:
        self.calls.append(messages)
        await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail


async def test_messages_arriving_together_are_one_bus_message_per_device() -> None:
    send = Recorder()
    batches = Coalescer(send, source="/ingest/bridges/mqtt", max_payload=1 << 20)
    handed = [
        message("gd-1", 1.0),
        message("gd-2", 2.0),
        message("gd-1", 3.0, start=1),
        message("gd-1", 4.0, start=2),
    ]

    sent = await asyncio.gather(*(batches.publish("t1", c, T0) for c in handed))

    assert sent == [1, 1, 1, 1]
    [call] = send.calls
    by_subject = readings(call)
    assert len(call) == 2  # gd-1's three messages in one ObservationBatch, gd-2's in another
    assert [v for _, v in by_subject["obs.t1.ulsan-refinery.gd-1"]] == [1.0, 3.0, 4.0]
    assert [v for _, v in by_subject["obs.t1.ulsan-refinery.gd-2"]] == [2.0]


async def test_a_reading_has_the_same_id_alone_or_in_company() -> None:
    """So a message the broker sends again after a crash is deduplicated, however it is grouped."""
    alone, _ = encode_together(
        [(message("gd-1", 3.0, start=1), T0)], tenant="t1", source="s", max_payload=1 << 20
    )
    together, _ = encode_together(
        [(message("gd-1", 1.0), T0), (message("gd-1", 3.0, start=1), T0 + timedelta(seconds=5))],
        tenant="t1",
        source="s",
        max_payload=1 << 20,
    )

    [(alone_id, _)] = readings(alone)["obs.t1.ulsan-refinery.gd-1"]
    assert alone_id in {i for i, _ in readings(together)["obs.t1.ulsan-refinery.gd-1"]}


async def test_tenants_travel_apart_and_later_messages_in_a_batch_of_their_own() -> None:
    send = Recorder()
    batches = Coalescer(send, source="s", max_payload=1 << 20)

    first = asyncio.gather(
        batches.publish("t1", message("gd-1", 1.0), T0), batches.publish("t2", message("gd-1", 2.0), T0)
    )
    while len(send.calls) < 2:  # noqa: ASYNC110 - the first two on their way to the bus
        await asyncio.sleep(0)
    later = await batches.publish("t1", message("gd-1", 3.0, start=1), T0)
    assert await first == [1, 1]

    assert later == 1
    subjects = [[m.subject for m in call] for call in send.calls]
    assert subjects == [
        ["obs.t1.ulsan-refinery.gd-1"],
        ["obs.t2.ulsan-refinery.gd-1"],
        ["obs.t1.ulsan-refinery.gd-1"],
    ]


async def test_when_the_bus_takes_nothing_every_message_of_the_batch_hears_it() -> None:
    """Each handler raises, so none of the messages is acknowledged to the broker."""
    batches = Coalescer(Recorder(fail=TimeoutError("no PubAck")), source="s", max_payload=1 << 20)

    results = await asyncio.gather(
        batches.publish("t1", message("gd-1", 1.0), T0),
        batches.publish("t1", message("gd-2", 2.0), T0),
        return_exceptions=True,
    )

    assert [type(r) for r in results] == [TimeoutError, TimeoutError]


def test_a_reading_too_large_for_the_bus_is_its_own_message_s_error() -> None:
    big = ObservationIn(
        site=SITE,
        device="gd-2",
        kind="gas.h2s",
        value=1.0,
        time=T0,
        attributes={f"a{n}": "x" * 200 for n in range(32)},
    )
    small, large = message("gd-1", 1.0), Checked(valid=[big], positions=[3])

    messages, sent = encode_together(
        [(small, T0), (large, T0)], tenant="t1", source="s", max_payload=4096 + 3000
    )

    assert sent == [1, 0]
    assert small.errors == []
    assert [(e.index, e.detail[:36]) for e in large.errors] == [(3, "the observation is too large for the")]
    assert list(readings(messages)) == ["obs.t1.ulsan-refinery.gd-1"]


@pytest.mark.parametrize("count", [1, 200])
async def test_every_message_hears_how_many_of_its_readings_were_sent(count: int) -> None:
    send = Recorder()
    batches = Coalescer(send, source="s", max_payload=1 << 20)

    sent = await asyncio.gather(
        *(batches.publish("t1", message(f"gd-{n % 7}", 1.0, 2.0, start=2 * n), T0) for n in range(count))
    )

    assert sent == [2] * count
    assert sum(len(v) for call in send.calls for v in readings(call).values()) == 2 * count
