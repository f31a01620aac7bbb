"""A service process that dies at a chosen point of the outbox path, for the crash tests.

    python -m tests.integration.outbox_child <database url> <nats url> <subject prefix> <count> <when>

It runs a relay of service `crashy` (leading), commits one unit of work emitting `count` messages
(`<prefix>.<n>`, ids `crash-<n>`), and is killed with SIGKILL:
- `when=commit`: after the commit, when its relay has read the rows and is about to publish them;
- `when=publish`: right after JetStream acknowledged the relay's publish, before the rows are deleted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence

from nats.aio.client import Client as NATS

from services.common.bus.connection import connect_bus
from services.common.bus.publisher import JetStreamPublisher, OutgoingMessage
from services.common.contracts.cloudevents import ce_headers
from services.common.db.pool import create_pool
from services.common.outbox import Outbox, OutboxRelay, RelayConfig

SERVICE = "crashy"


def crash_message(prefix: str, n: int) -> OutgoingMessage:
    headers = ce_headers(
        id=f"crash-{n}", type="org.safetyhub.test.v1", source="/crashy", time="2026-12-01T00:00:00Z"
    )
    return OutgoingMessage(f"{prefix}.{n % 3}", f"crash-{n}".encode(), headers)


class DyingPublisher(JetStreamPublisher):
    """The process dies before the publish (`before=True`) or right after JetStream stored it."""

    def __init__(self, nc: NATS, *, before: bool) -> None:
        super().__init__(nc)
        self._before = before

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if not self._before:
            await super().publish(messages)
        os.kill(os.getpid(), signal.SIGKILL)


async def main(database_url: str, nats_url: str, prefix: str, count: int, when: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=3)
    nc = await connect_bus(nats_url, name="outbox-child")
    publisher = DyingPublisher(nc, before=when == "commit")
    await publisher.start()
    relay = OutboxRelay(pool, publisher, SERVICE, RelayConfig(poll_interval=0.05))
    relay.start()
    while not relay.leading:  # noqa: ASYNC110 - the relay exposes a flag, not an event
        await asyncio.sleep(0.01)
    async with Outbox(pool, SERVICE).unit_of_work() as uow:
        for n in range(count):
            uow.emit(crash_message(prefix, n))
    await asyncio.sleep(30)  # the relay, woken by the commit, kills the process
    raise SystemExit("still alive 30 s after the commit")


if __name__ == "__main__":
    db, bus, subject_prefix, n, moment = sys.argv[1:6]
    asyncio.run(main(db, bus, subject_prefix, int(n), moment))
