"""Typed channels: one stream, one subject pattern, one message type, built and read in one place.

A channel is declared by the service that publishes on it and imported by those that consume it,
so the subject `obs.<tenant>.<site>.<device>` is spelt once: the publisher asks the channel for a
message's subject, the subscriber asks it to decode a message and to check the subject against
what the message says. What does not decode, or came on another subject, is `Poison`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, Self, TypeVar

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg

from services.common.bus.consumer import Poison
from services.common.bus.publisher import JetStreamPublisher, OutgoingMessage, Published
from services.common.bus.streams import StreamDef


class Decodable(Protocol):
    @classmethod
    def FromString(cls, data: bytes, /) -> Self: ...


M = TypeVar("M", bound=Decodable)


@dataclass(frozen=True, slots=True)
class Channel(Generic[M]):
    """`prefix.<token>.<token>...` on `stream`, carrying `message` (a protobuf type)."""

    stream: StreamDef
    prefix: str
    tokens: tuple[str, ...]
    message: type[M]

    @property
    def filter_subject(self) -> str:
        """Every subject of the channel, for a consumer of all of it."""
        return f"{self.prefix}.>"

    def subject(self, *values: str) -> str:
        if len(values) != len(self.tokens):
            raise ValueError(f"{self.prefix} subjects take {', '.join(self.tokens)}; got {values}")
        return ".".join((self.prefix, *values))

    def decode(self, data: bytes) -> M:
        try:
            return self.message.FromString(data)
        except DecodeError as err:
            name = self.message.__name__
            article = "an" if name[0] in "AEIOU" else "a"
            raise Poison(f"not {article} {name} protobuf: {err}") from err


class ChannelPublisher(Generic[M]):
    """Publishes on one channel only: a message for a subject outside it is a bug, refused here."""

    def __init__(self, channel: Channel[M], publisher: JetStreamPublisher) -> None:
        self.channel = channel
        self._publisher = publisher
        self._prefix = channel.prefix + "."

    @property
    def max_payload(self) -> int:
        return self._publisher.max_payload

    async def publish(self, messages: Sequence[OutgoingMessage]) -> Published:
        for message in messages:
            if not message.subject.startswith(self._prefix):
                raise ValueError(f"{message.subject} is not a subject of {self.channel.stream.name}")
        return await self._publisher.publish(messages)


class ChannelSubscriber(Generic[M]):
    """Decodes the messages of one channel and checks that each arrived on its own subject."""

    def __init__(self, channel: Channel[M]) -> None:
        self.channel = channel

    @property
    def filter_subject(self) -> str:
        return self.channel.filter_subject

    def decode(self, msg: Msg) -> M:
        return self.channel.decode(msg.data)

    def check_subject(self, msg: Msg, *values: str) -> None:
        expected = self.channel.subject(*values)
        if msg.subject != expected:
            raise Poison(f"subject {msg.subject} does not match the envelope ({expected})")
