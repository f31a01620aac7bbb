"""Pipelined JetStream publishing: many messages in flight, each acknowledged by the stream.

nats-py's `publish_async` runs an asyncio semaphore, a token, a JSON decode and a dataclass per
message; measured here it tops out near 22k msg/s. This publisher keeps the same guarantee (a
message counts as published only once JetStream acknowledged it) with one wildcard reply
subscription, a counter for reply tokens and a byte check on each acknowledgement: about twice the
rate with CloudEvents headers. It uses only nats-py's public API.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ConnectionClosedError, ConnectionDrainingError, OutboundBufferLimitError

from services.common.errors import SafetyhubError, UnavailableError


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why JetStream refused one message, as its acknowledgement said."""

    # The HTTP-like status: 503 for limits and for no stream at all, 400 for a failed expectation.
    code: int | None
    # JetStream's own error code, e.g. 10077 "maximum messages per subject exceeded"; None when
    # no stream answered (nats-server's "no responders").
    err_code: int | None
    description: str
    # The stream that refused; None when no stream takes the subject.
    stream: str | None

    def __str__(self) -> str:
        detail = [f"code {self.code}"] if self.code is not None else []
        if self.err_code is not None:
            detail.append(f"err_code {self.err_code}")
        where = f"stream {self.stream}: " if self.stream else ""
        return f"{where}{self.description}" + (f" ({', '.join(detail)})" if detail else "")


class _AckError(msgspec.Struct):
    code: int | None = None
    err_code: int | None = None
    description: str = ""


class _Ack(msgspec.Struct):
    error: _AckError | None = None
    stream: str | None = None


_ACK = msgspec.json.Decoder(_Ack)
_NO_RESPONDERS = "no stream takes the subject"  # nats-server answers "no responders"


def refusal_of(data: bytes, headers: Mapping[str, str] | None) -> Refusal:
    """The refusal a failed acknowledgement carries: a PubAck with an `error`, or an empty status
    reply (nats-server's 503 "no responders" when no stream takes the subject)."""
    if not data:
        status = (headers or {}).get("Status", "")
        code = int(status) if status.isdigit() else None
        return Refusal(code, None, _NO_RESPONDERS if code == 503 else "empty acknowledgement", None)
    try:
        ack = _ACK.decode(data)
    except msgspec.MsgspecError:
        return Refusal(None, None, data.decode(errors="replace"), None)
    error = ack.error or _AckError(description=data.decode(errors="replace"))
    return Refusal(error.code, error.err_code, error.description, ack.stream)


class PublishRejected(SafetyhubError):
    """JetStream refused a message (no stream for the subject, limits, a failed expectation).

    Like asyncpg's `sqlstate`, the fields say which refusal it was, for the first refused message
    of the batch: `code` (HTTP-like), `err_code` (JetStream's), `description`, `stream` (None when
    no stream takes the subject) and `subject`; `refused` of `total` messages were refused.
    """

    def __init__(self, refusal: Refusal, *, subject: str, refused: int, total: int) -> None:
        self.refusal = refusal
        self.code = refusal.code
        self.err_code = refusal.err_code
        self.description = refusal.description
        self.stream = refusal.stream
        self.subject = subject
        self.refused = refused
        self.total = total
        super().__init__(f"{refused} of {total} refused: {subject}: {refusal}")


class NothingSent(UnavailableError):
    """NATS is not connected: not one message of the batch was sent."""


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    subject: str
    payload: bytes
    headers: dict[str, str]
    # Items the message carries (observations of an ObservationBatch): what a publish that the
    # stream drops as a duplicate does not add, for the publisher's caller to count.
    count: int = 1


@dataclass(frozen=True, slots=True)
class Published:
    """What the stream made of one `publish`: every message is stored, some of them earlier."""

    # Messages JetStream dropped as duplicates (their Nats-Msg-Id is in the stream already)...
    duplicates: int = 0
    # ...and the items (`OutgoingMessage.count`) they carry.
    duplicate_items: int = 0

    def __add__(self, other: Published) -> Published:
        return Published(self.duplicates + other.duplicates, self.duplicate_items + other.duplicate_items)


@dataclass(slots=True)
class _Batch:
    remaining: int
    done: asyncio.Future[None]
    refusals: dict[str, Refusal] = field(default_factory=dict)  # by reply token
    duplicates: set[str] = field(default_factory=set)  # reply tokens of duplicate acks


class JetStreamPublisher:
    def __init__(self, nc: NATS, *, max_in_flight: int = 20_000, ack_timeout: float = 5.0) -> None:
        self._nc = nc
        self._ack_timeout = ack_timeout
        self._prefix = ""
        self._sub: Subscription | None = None
        self._tokens = itertools.count()
        self._waiting: dict[str, _Batch] = {}
        self._capacity = asyncio.Semaphore(max_in_flight)
        # One batch reserves its capacity at a time: two batches each holding part of it while
        # waiting for the rest would wait for each other forever.
        self._reserving = asyncio.Lock()
        self._max_in_flight = max_in_flight

    async def start(self) -> None:
        self._prefix = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(self._prefix + ".*", cb=self._on_ack, pending_msgs_limit=-1)

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):  # the connection may already be closed
                await self._sub.unsubscribe()
            self._sub = None
        for batch in self._waiting.values():
            if not batch.done.done():
                batch.done.set_exception(UnavailableError("publisher closed"))
        self._waiting.clear()

    @property
    def max_payload(self) -> int:
        """The largest message the server takes (its INFO `max_payload`), headers included."""
        return self._nc.max_payload

    @property
    def in_flight(self) -> int:
        return len(self._waiting)

    async def _on_ack(self, msg: Msg) -> None:
        token = msg.subject[len(self._prefix) + 1 :]
        batch = self._waiting.pop(token, None)
        if batch is None:  # late ack of a batch that already timed out
            return
        data = msg.data
        # A PubAck is {"stream":..,"seq":..[,"duplicate":true]}; failures carry "error". A
        # duplicate is success: the message is in the stream from an earlier publish.
        if b'"error"' in data or not data:
            batch.refusals[token] = refusal_of(data, msg.headers)
        elif b'"duplicate"' in data:
            batch.duplicates.add(token)
        batch.remaining -= 1
        if batch.remaining == 0 and not batch.done.done():
            batch.done.set_result(None)

    async def publish(self, messages: Sequence[OutgoingMessage]) -> Published:
        """Publish all messages; return once JetStream stored every one, else raise.

        Returns how many of them the stream already had (dropped as duplicates, which is success).
        Raises UnavailableError when NATS cannot be reached or does not acknowledge in time, and
        PublishRejected when the stream refused a message. Either way the caller must treat the
        whole batch as not accepted; publishing it again is safe (Nats-Msg-Id deduplicates).
        """
        if not messages:
            return Published()
        if len(messages) > self._max_in_flight:
            total = Published()
            for start in range(0, len(messages), self._max_in_flight):
                try:
                    total += await self.publish(messages[start : start + self._max_in_flight])
                except NothingSent as err:
                    if start == 0:
                        raise
                    # The first parts were sent (and stored): no longer "nothing sent".
                    raise UnavailableError(f"NATS went away after {start} messages were sent") from err
            return total
        if not self._nc.is_connected:
            raise NothingSent("NATS is not connected")
        loop = asyncio.get_running_loop()
        batch = _Batch(remaining=len(messages), done=loop.create_future())
        tokens: list[str] = []
        async with self._reserving:
            for _ in range(len(messages)):
                await self._capacity.acquire()
        try:
            publish = self._nc.publish
            prefix = self._prefix
            for message in messages:
                token = str(next(self._tokens))
                tokens.append(token)
                self._waiting[token] = batch
                await publish(
                    message.subject, message.payload, reply=f"{prefix}.{token}", headers=message.headers
                )
            await asyncio.wait_for(asyncio.shield(batch.done), self._ack_timeout)
        except (
            TimeoutError,
            ConnectionClosedError,
            ConnectionDrainingError,
            OutboundBufferLimitError,
        ) as err:
            raise UnavailableError(f"JetStream did not acknowledge the publish: {err!r}") from err
        finally:
            for token in tokens:
                self._waiting.pop(token, None)
            for _ in range(len(messages)):
                self._capacity.release()
        if batch.refusals:
            first = next(i for i, token in enumerate(tokens) if token in batch.refusals)
            refusal = batch.refusals[tokens[first]]
            subject = messages[first].subject
            raise PublishRejected(refusal, subject=subject, refused=len(batch.refusals), total=len(messages))
        if not batch.duplicates:
            return Published()
        dropped = [m for token, m in zip(tokens, messages, strict=True) if token in batch.duplicates]
        return Published(len(dropped), sum(m.count for m in dropped))
