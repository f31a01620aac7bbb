"""Bridge messages that arrive together travel together: one bus message per device, not one
per MQTT message.

Under load a broker hands the bridge many messages at once (its in-flight window); publishing
each as its own ObservationBatch costs a JetStream round trip, a store delivery and an ack per
reading. The coalescer gathers the checked readings of the messages whose handling reached it
in the same turn of the event loop, encodes them together (`encode_observations` groups them per
device, as the contract allows) and publishes once; each message's handler then learns its own
outcome and the message is acknowledged to the broker as before, only after JetStream took it.
With one message at a time (light load) a batch holds one message: no wait is added.

Ids are those of the readings alone (client id, or derived from tenant, device, kind and time),
so a message sent again after a crash is deduplicated whatever it is grouped with. The one
difference from a message encoded alone: a batch's receive time is its earliest message's, which
a reading without a time of its own takes as its time (milliseconds apart).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from services.common.bus.publisher import OutgoingMessage
from services.ingest.domain.checks import ItemError
from services.ingest.encode import HEADER_ROOM, encode_observations
from services.ingest.intake import Checked

Send = Callable[[Sequence[OutgoingMessage]], Awaitable[object]]


@dataclass
class _Member:
    checked: Checked
    received: datetime
    done: asyncio.Future[int]


@dataclass
class _Batch:
    tenant: str
    members: list[_Member] = field(default_factory=list)


def encode_together(
    members: Sequence[tuple[Checked, datetime]], *, tenant: str, source: str, max_payload: int
) -> tuple[list[OutgoingMessage], list[int]]:
    """The bus messages of the valid readings of several bridge messages of one tenant, and how
    many readings of each were sent. A reading too large for one bus message joins its own
    message's errors (as `encode_checked` does for a message alone)."""
    items = [item for checked, _ in members for item in checked.valid]
    received = min(when for _, when in members)
    limit = max_payload - HEADER_ROOM
    encoded = encode_observations(items, tenant=tenant, source=source, received=received, max_payload=limit)
    oversized = set(encoded.oversized)
    sent: list[int] = []
    start = 0
    for checked, _ in members:
        end = start + len(checked.valid)
        sent.append(sum(1 for i in encoded.ids[start:end] if i))
        too_large = [i - start for i in range(start, end) if i in oversized]
        if too_large:
            checked.errors.extend(
                ItemError(
                    checked.positions[i],
                    "",
                    f"the observation is too large for the event bus (at most {limit} bytes encoded)",
                )
                for i in too_large
            )
            checked.errors.sort(key=lambda e: e.index)
        start = end
    return encoded.messages, sent


class Coalescer:
    """Gathers the readings handed to it within one turn of the event loop, per tenant, and
    publishes them with `send` (which retries until JetStream takes them, or raises)."""

    def __init__(self, send: Send, *, source: str, max_payload: int) -> None:
        self._send = send
        self._source = source
        self._max_payload = max_payload
        self._open: dict[str, _Batch] = {}
        self._flushing: set[asyncio.Task[None]] = set()

    async def publish(self, tenant: str, checked: Checked, received: datetime) -> int:
        """Publish `checked`'s valid readings with whatever else arrives now; returns how many
        were sent once JetStream took them. Oversized readings join `checked.errors`."""
        loop = asyncio.get_running_loop()
        if not self._open:
            # After the handlers already scheduled in this turn have had their say.
            loop.call_soon(self._flush)
        batch = self._open.setdefault(tenant, _Batch(tenant))
        member = _Member(checked, received, loop.create_future())
        batch.members.append(member)
        return await member.done

    def _flush(self) -> None:
        batches, self._open = list(self._open.values()), {}
        for batch in batches:
            task = asyncio.create_task(self._publish(batch), name="mqtt-bridge-batch")
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    async def _publish(self, batch: _Batch) -> None:
        members = batch.members
        try:
            messages, sent = encode_together(
                [(m.checked, m.received) for m in members],
                tenant=batch.tenant,
                source=self._source,
                max_payload=self._max_payload,
            )
            if messages:
                await self._send(messages)
        except BaseException as err:
            for member in members:
                if not member.done.done():
                    if isinstance(err, asyncio.CancelledError):
                        member.done.cancel()
                    else:
                        member.done.set_exception(err)
            if not isinstance(err, Exception):
                raise
            return
        for member, count in zip(members, sent, strict=True):
            if not member.done.done():
                member.done.set_result(count)
