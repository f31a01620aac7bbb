"""The unit of work: one PostgreSQL transaction holding a service's state and its outgoing messages.

A handler (a consumer's batch, an API request) writes its state through `uow.connection` and
queues what it announces with `uow.emit(message)`. At the end of the block the messages are
inserted into the outbox in emit order, a notification wakes the service's relay, and the
transaction commits: state and messages become visible together, or (on any exception) neither.
Nothing is published here; the relay (relay.py) publishes what was committed, so a crash between
commit and publish loses nothing.

    outbox = Outbox(pool, "alarms")
    async with outbox.unit_of_work() as uow:
        await uow.connection.execute("UPDATE alarms SET state = $2 WHERE id = $1", ...)
        uow.emit(message)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence

import asyncpg
import msgspec

from services.common.bus.publisher import OutgoingMessage
from services.common.contracts.cloudevents import MSG_ID
from services.common.db.pool import TRANSIENT_DB_ERRORS
from services.common.errors import SafetyhubError, UnavailableError

# nats-server's default `max_payload`; a message over it could never be published, so it is
# refused at `emit`, where the handler can still see the error, not by a relay that would block.
DEFAULT_MAX_PAYLOAD = 1024 * 1024

# One statement, one round trip whatever the number of messages. The unnest rows are inserted in
# array order, so `seq` follows emit order. A message id already waiting in the outbox is the same
# message emitted again (a handler run twice): it is kept once, as JetStream would keep it.
# pg_notify is delivered at commit only; repeats within one transaction are folded into one.
_WRITE = """
WITH written AS (
    INSERT INTO outbox (service, message_id, subject, payload, headers)
    SELECT $1, m.id, m.subject, m.payload, m.headers
    FROM unnest($2::text[], $3::text[], $4::bytea[], $5::jsonb[]) AS m(id, subject, payload, headers)
    ON CONFLICT (message_id) DO NOTHING
)
SELECT pg_notify($6, '')
"""
_RECORD_PROCESSED = """
INSERT INTO processed_messages (consumer, message_id, service)
SELECT $1, id, $2 FROM unnest($3::text[]) AS id
ON CONFLICT DO NOTHING
RETURNING message_id
"""


class OutboxError(SafetyhubError):
    """A message the outbox cannot take: no Nats-Msg-Id, or larger than NATS accepts."""


# The relays leading in this process, by service: a commit wakes its own process's relay directly,
# without waiting for PostgreSQL to deliver the NOTIFY on the relay's connection (a round trip
# through the server and the loop). The NOTIFY still wakes the relays of other processes.
_LOCAL_RELAYS: dict[str, set[Callable[[], None]]] = {}


def wake_on_commit(service: str, wake: Callable[[], None]) -> Callable[[], None]:
    """Call `wake` after each commit of `service` in this process that emitted; returns the undo."""
    _LOCAL_RELAYS.setdefault(service, set()).add(wake)
    return lambda: _LOCAL_RELAYS.get(service, set()).discard(wake)


def notify_channel(service: str) -> str:
    """The LISTEN/NOTIFY channel on which a service's relay is woken at each commit."""
    return f"safetyhub_outbox.{service}"


def wire_size(message: OutgoingMessage) -> int:
    """Bytes the message takes against the server's max_payload (headers count too)."""
    headers = sum(len(k) + len(v) + 4 for k, v in message.headers.items()) + 12 if message.headers else 0
    return len(message.payload) + headers


class UnitOfWork:
    """One open transaction. Use `connection` for the service's own tables; never commit it yourself."""

    def __init__(self, connection: asyncpg.Connection, service: str, max_payload: int) -> None:
        self.connection = connection
        self.service = service
        self._max_payload = max_payload
        self._messages: list[OutgoingMessage] = []
        # Wall-clock time PostgreSQL acknowledged the COMMIT; None until then (for logs, measures).
        self.committed_at: float | None = None

    @property
    def emitted(self) -> Sequence[OutgoingMessage]:
        return tuple(self._messages)

    def emit(self, message: OutgoingMessage) -> None:
        """Queue a message, published after commit. Its `Nats-Msg-Id` header is its identity."""
        if not message.headers.get(MSG_ID):
            raise OutboxError(f"a message for {message.subject} has no {MSG_ID} header")
        size = wire_size(message)
        if size > self._max_payload:
            raise OutboxError(
                f"a message for {message.subject} takes {size} bytes; NATS takes at most {self._max_payload}"
            )
        self._messages.append(message)

    async def first_deliveries(self, consumer: str, message_ids: Sequence[str]) -> set[str]:
        """Record the messages as processed by `consumer` in this transaction; return those that were
        not processed before (a message processed and committed, then redelivered, is not)."""
        if not message_ids:
            return set()
        rows = await self.connection.fetch(_RECORD_PROCESSED, consumer, self.service, list(message_ids))
        return {row[0] for row in rows}

    async def _write_outbox(self) -> None:
        if not self._messages:
            return
        messages = self._messages
        await self.connection.execute(
            _WRITE,
            self.service,
            [m.headers[MSG_ID] for m in messages],
            [m.subject for m in messages],
            [m.payload for m in messages],
            [msgspec.json.encode(m.headers).decode() for m in messages],
            notify_channel(self.service),
        )


class Outbox:
    """Units of work of one service; its relay publishes what they commit."""

    def __init__(self, pool: asyncpg.Pool, service: str, *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self._pool = pool
        self.service = service
        self._max_payload = max_payload

    @contextlib.asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        """A transaction that commits state and emitted messages together when the block ends.

        An exception in the block rolls everything back and propagates; a lost or unreachable
        database is raised as UnavailableError, which consumers treat as "retry later".
        """
        try:
            async with self._pool.acquire() as connection:
                async with connection.transaction():
                    uow = UnitOfWork(connection, self.service, self._max_payload)
                    yield uow
                    await uow._write_outbox()
                uow.committed_at = time.time()
                if uow._messages:
                    for wake in _LOCAL_RELAYS.get(self.service, ()):
                        wake()
        except TRANSIENT_DB_ERRORS as err:
            raise UnavailableError(f"PostgreSQL unavailable: {err}") from err
