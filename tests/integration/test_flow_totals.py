"""The flow's totals add up: accepted = stored + duplicates (at ingest and at the store) + in flight.

A reposted id used to count as accepted twice and stored once, with no duplicate anywhere: the
stream dropped the second message and nobody counted it. Read here as a user reads them: from
the hub's /metrics, through the live view's own reading of them.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.common.bus.connection import connect_bus
from services.common.bus.publisher import JetStreamPublisher, OutgoingMessage, Published
from services.common.bus.streams import ensure_streams
from services.common.contracts.cloudevents import MSG_ID
from services.hub.dashboard import FlowSnapshot, snapshot_of
from tests.conftest import RunningHub, eventually, hub_streams

pytestmark = pytest.mark.integration

BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


async def test_the_publisher_reports_what_the_stream_dropped_as_duplicates(nats_url: str) -> None:
    nc = await connect_bus(nats_url, name="test-publisher")
    await ensure_streams(nc.jetstream(), hub_streams())
    publisher = JetStreamPublisher(nc)
    await publisher.start()

    def message(msg_id: str, count: int) -> OutgoingMessage:
        return OutgoingMessage("obs.acme.refinery.gd-101", msg_id.encode(), {MSG_ID: msg_id}, count=count)

    try:
        assert await publisher.publish([message("m-1", 40), message("m-2", 3)]) == Published()
        again = await publisher.publish([message("m-1", 40), message("m-3", 7), message("m-2", 3)])
        assert again == Published(duplicates=2, duplicate_items=43)
    finally:
        await publisher.close()
        await nc.close()


def _reading(obs_id: str, n: int) -> dict[str, Any]:
    return {
        "id": obs_id,
        "site": "ulsan-refinery",
        "device": "gd-cdu1-101",
        "kind": "gas.h2s",
        "unit": "ppm",
        "value": float(n),
        "time": (BASE + timedelta(seconds=n)).isoformat(),
    }


async def _flow(hub: RunningHub) -> FlowSnapshot:
    async with hub.session.get(hub.url + "/metrics") as resp:
        return snapshot_of(text_string_to_metric_families(await resp.text()))


def _since(before: FlowSnapshot, after: FlowSnapshot) -> FlowSnapshot:
    # The process's counters run over the whole test session: compare what this test added.
    plain = ("received", "accepted", "stored", "ingest_duplicates", "store_duplicates")
    return FlowSnapshot(**{name: getattr(after, name) - getattr(before, name) for name in plain})


async def test_reposted_ids_are_counted_so_accepted_is_stored_plus_duplicates(
    running_hub: RunningHub,
) -> None:
    run = uuid.uuid4().hex[:8]
    a, b, c, d, e = (f"{run}-{name}" for name in "abcde")
    posts = [
        [_reading(a, 1), _reading(b, 2)],
        [_reading(a, 1), _reading(b, 2)],  # a retry: the stream drops the message (2 observations)
        [_reading(b, 2), _reading(c, 3)],  # another message: the store finds b already written
        [_reading(d, 4), _reading(d, 4)],  # an id twice in one post: it travels once
        [_reading(e, 5)],
        [_reading(e, 5)],  # the reposted single id of the issue: dropped by the stream
    ]
    before = await _flow(running_hub)
    for body in posts:
        headers = {**running_hub.auth("gateway"), "Content-Type": "application/json"}
        data = io.BytesIO(msgspec.json.encode(body))
        async with running_hub.session.post(
            running_hub.url + "/v1/observations", data=data, headers=headers
        ) as resp:
            assert resp.status == 202
            assert (await resp.json())["accepted"] == [item["id"] for item in body]

    async def caught_up() -> FlowSnapshot | None:
        flow = _since(before, await _flow(running_hub))
        return flow if flow.stored + flow.store_duplicates >= 6 else None

    flow = await eventually(caught_up, what="the store writing every new observation")
    assert flow.accepted == 10
    assert flow.stored == 5
    assert (flow.ingest_duplicates, flow.store_duplicates) == (4, 1)
    assert flow.accepted == flow.stored + flow.duplicates
    assert flow.in_flight == 0
