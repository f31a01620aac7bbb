"""What the alarm engine writes back when readings change nothing: only the record of what was
applied, and that only every PROGRESS_EVERY of observation time; and what that must not cost: a
redelivered part of a batch whose readings crossed and came back still yields no transition."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from nats.js import JetStreamContext

from services.alarms.domain.workset import PROGRESS_EVERY
from services.common.contracts import ObservationBatch
from services.common.contracts.cloudevents import MSG_ID
from services.ingest.channel import OBSERVATION_CHANNEL
from tests.conftest import RunningHub, eventually
from tests.integration.test_alarms_service import SITE, TENANT, gas, nc, point, post, states_of

__all__ = ["nc"]  # the fixture, shared with the service's tests
STREAM = OBSERVATION_CHANNEL.stream.name


async def consumed(js: JetStreamContext, device: str) -> int:
    """Wait until the alarm engine has evaluated and acked the device's last message; its sequence."""
    seq = (await js.get_last_msg(STREAM, OBSERVATION_CHANNEL.subject(TENANT, SITE, device))).seq
    assert seq is not None

    async def done() -> bool:
        info = await js.consumer_info(STREAM, "alarms")
        return info.delivered.stream_seq >= seq and info.num_ack_pending == 0

    await eventually(done, what=f"the alarm engine consumed message {seq}")
    return seq


async def posted(hub: RunningHub, js: JetStreamContext, items: Sequence[dict[str, Any]]) -> int:
    await post(hub, list(items))
    return await consumed(js, items[0]["device"])


async def engine_state(pool: asyncpg.Pool, alarm_id: str) -> bytes:
    row = await point(pool, alarm_id)
    assert row is not None, alarm_id
    return bytes(row["engine_state"])


async def test_readings_that_change_nothing_write_their_progress_only_every_few_seconds(
    running_hub: RunningHub, nc: Any
) -> None:
    pool, js = running_hub.hub.pool, nc.jetstream()
    device = "gd-vrds-301"
    high, stale = f"{device}--lel-high", f"{device}--gas-lel-stale"
    step = PROGRESS_EVERY.total_seconds()
    await posted(running_hub, js, [gas(device, "gas.lel", 0, 1.0)])
    high_0, stale_0 = await engine_state(pool, high), await engine_state(pool, stale)

    # A normal reading a second later: the high point's row is left as it was; the stale point's
    # timer moved with the reading, so its row is written.
    await posted(running_hub, js, [gas(device, "gas.lel", 1, 1.2)])
    assert await engine_state(pool, high) == high_0
    assert await engine_state(pool, stale) != stale_0

    # PROGRESS_EVERY after the row's last write, the progress is written.
    await posted(running_hub, js, [gas(device, "gas.lel", step, 1.1)])
    assert await engine_state(pool, high) != high_0
    assert await states_of(pool, high) == []


async def test_a_redelivered_part_of_a_batch_that_crossed_and_came_back_yields_no_transition(
    running_hub: RunningHub, nc: Any
) -> None:
    pool, js = running_hub.hub.pool, nc.jetstream()
    device = "gd-vrds-302"
    high = f"{device}--lel-high"
    await posted(running_hub, js, [gas(device, "gas.lel", 0, 1.0)])
    # Above the high set-point for a second, shorter than its 2 s on-delay, in one message: the
    # pending activation starts and is broken within the batch, so the point ends as it began.
    seq = await posted(running_hub, js, [gas(device, "gas.lel", 1, 25.0), gas(device, "gas.lel", 2, 1.0)])
    assert await states_of(pool, high) == []
    # A copy of the message with only its first reading (as if only part had been applied): it is
    # older than what the point has applied, so late and ignored, and its on-delay never starts.
    original = await js.get_msg(STREAM, seq)
    batch = ObservationBatch.FromString(original.data)
    del batch.observations[1:]
    subject = OBSERVATION_CHANNEL.subject(TENANT, SITE, device)
    await js.publish(subject, batch.SerializeToString(), headers={MSG_ID: uuid.uuid4().hex})
    await consumed(js, device)
    # The on-delay would have been due long ago (the readings are an hour old): a timer pass
    # later, still nothing.
    await posted(running_hub, js, [gas(device, "gas.lel", 3, 1.0)])
    assert await states_of(pool, high) == []
    row = await point(pool, high)
    assert row is not None and row["state"] == "NORM" and row["due"] is None
