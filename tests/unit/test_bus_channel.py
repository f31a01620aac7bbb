"""A typed channel builds its subjects in one place and turns what does not fit into poison."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from services.common.bus.channel import ChannelPublisher, ChannelSubscriber
from services.common.bus.consumer import Poison
from services.common.bus.publisher import JetStreamPublisher, OutgoingMessage
from services.common.contracts import ObservationBatch
from services.ingest.channel import OBSERVATION_CHANNEL


@dataclass
class FakeMsg:
    subject: str
    data: bytes


def test_the_observation_channel_builds_its_subject_from_its_tokens() -> None:
    assert OBSERVATION_CHANNEL.subject("acme", "refinery", "gd-101") == "obs.acme.refinery.gd-101"
    assert OBSERVATION_CHANNEL.filter_subject == "obs.>"
    assert OBSERVATION_CHANNEL.filter_subject in OBSERVATION_CHANNEL.stream.subjects
    with pytest.raises(ValueError, match="tenant, site, device"):
        OBSERVATION_CHANNEL.subject("acme", "refinery")


def test_a_subscriber_decodes_its_type_and_refuses_another_subject_or_payload() -> None:
    subscriber = ChannelSubscriber(OBSERVATION_CHANNEL)
    batch = ObservationBatch()
    batch.envelope.id = "b1"
    msg = FakeMsg("obs.acme.refinery.gd-101", batch.SerializeToString())

    assert subscriber.decode(msg).envelope.id == "b1"  # type: ignore[arg-type]
    subscriber.check_subject(msg, "acme", "refinery", "gd-101")  # type: ignore[arg-type]
    with pytest.raises(Poison, match="does not match"):
        subscriber.check_subject(msg, "acme", "refinery", "gd-102")  # type: ignore[arg-type]
    with pytest.raises(Poison, match="not an ObservationBatch protobuf"):
        subscriber.decode(FakeMsg(msg.subject, b"\xff\xfe"))  # type: ignore[arg-type]


async def test_a_channel_publisher_refuses_a_message_for_another_stream_before_sending() -> None:
    # No connection: a refused message must not reach the publisher at all.
    publisher = ChannelPublisher(OBSERVATION_CHANNEL, JetStreamPublisher(None))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a subject of OBSERVATIONS"):
        await publisher.publish([OutgoingMessage("deadletter.store.obs.a.b.c", b"", {})])
