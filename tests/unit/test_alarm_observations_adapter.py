"""An OBSERVATIONS message as the engine reads it: a reading of exactly zero is a reading, a value
or confidence the device did not send is none, and the quality is the bus enum's number."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from nats.aio.msg import Msg

from services.alarms.adapters.observations import observations_of
from services.alarms.domain.evaluate import Quality
from services.common.bus.consumer import Poison
from services.common.contracts import ObservationBatch
from services.ingest.domain.contract import ObservationIn
from services.ingest.encode import encode_observations

NOW = datetime(2026, 12, 1, 9, 15, 0, 250_000, tzinfo=UTC)


def _message(*items: ObservationIn) -> Msg:
    encoded = encode_observations(list(items), tenant="t1", source="/ingest/keys/k", received=NOW)
    [message] = encoded.messages
    return Msg(None, subject=message.subject, data=message.payload, headers=message.headers)  # type: ignore[arg-type]


def _item(**fields: object) -> ObservationIn:
    return ObservationIn(**{"site": "s1", "device": "gd-1", "kind": "gas.lel", "time": NOW, **fields})  # type: ignore[arg-type]


def test_values_confidences_and_qualities_as_sent() -> None:
    msg = _message(
        _item(id="zero", value=0.0),
        _item(id="none", quality="bad"),
        _item(id="negative-zero", value=-0.0),
        _item(id="reading", value=12.5),
        _item(id="sure", kind="video.smoke", confidence=0.9),
        _item(id="unsure", kind="video.smoke", confidence=0.0),
        _item(id="doubt", value=3.0, quality="uncertain"),
    )

    got = {o.id: (o.value, o.confidence, o.quality) for o in observations_of(msg)}

    assert got == {
        "zero": (0.0, None, Quality.GOOD),
        "none": (None, None, Quality.BAD),
        "negative-zero": (-0.0, None, Quality.GOOD),
        "reading": (12.5, None, Quality.GOOD),
        "sure": (None, 0.9, Quality.GOOD),
        "unsure": (None, 0.0, Quality.GOOD),
        "doubt": (3.0, None, Quality.UNCERTAIN),
    }
    first = observations_of(msg)[0]
    assert (first.tenant, first.site, first.device, first.kind, first.at) == (
        "t1",
        "s1",
        "gd-1",
        "gas.lel",
        NOW,
    )


def test_a_member_of_another_device_is_poison() -> None:
    msg = _message(_item(id="a", value=1.0), _item(id="b", value=2.0))
    batch = ObservationBatch.FromString(msg.data)
    batch.observations[1].device = "gd-2"
    tampered = Msg(None, subject=msg.subject, data=batch.SerializeToString(), headers=msg.headers)  # type: ignore[arg-type]

    with pytest.raises(Poison, match="observation 1 is not of t1/s1/gd-1"):
        observations_of(tampered)
