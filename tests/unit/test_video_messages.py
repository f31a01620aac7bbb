"""A rule firing becomes the bus message a posted detection would: ingest's encoder, a batch of one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.common.contracts import ObservationBatch
from services.ingest.encode import to_message
from services.video.adapters.messages import encode, firing_observation
from services.video.domain.geometry import Box
from services.video.domain.rules import Firing, RuleKind

TAKEN = datetime(2026, 12, 1, 8, 0, 0, 250000, tzinfo=UTC)
RECEIVED = datetime(2026, 12, 1, 8, 0, 1, tzinfo=UTC)


def test_a_firing_travels_as_a_batch_of_one_on_the_devices_subject() -> None:
    firing = Firing(RuleKind.INTRUSION, "tank-bund", 7, "person", Box(64, 120, 96, 200), 0.8765, 12.0, 0.0)
    item = firing_observation(
        firing,
        site="ulsan-refinery",
        device="cam-tf-501",
        taken=TAKEN,
        frame=(320, 240),
        snapshot="01KB9ZQ4XJ3J5V4N2Y7W8X9Z0A",
    )
    observation_id, message = encode(item, tenant="ulsan-refining", received=RECEIVED)

    assert message.subject == "obs.ulsan-refining.ulsan-refinery.cam-tf-501"
    batch = ObservationBatch.FromString(message.payload)
    (obs,) = batch.observations
    assert obs.envelope.id == observation_id
    assert (obs.kind, obs.device, obs.envelope.source) == (
        "video.intrusion",
        "cam-tf-501",
        "/video/ulsan-refinery/cam-tf-501",
    )
    assert obs.confidence == pytest.approx(0.8765)
    assert (obs.box.x, obs.box.y, obs.box.width, obs.box.height) == pytest.approx((0.2, 0.5, 0.1, 80 / 240))
    assert obs.snapshot == "/v1/snapshots/01KB9ZQ4XJ3J5V4N2Y7W8X9Z0A"
    assert dict(obs.attributes) == {
        "camera": "cam-tf-501",
        "zone": "tank-bund",
        "track_id": "7",
        "label": "person",
        "dwell_s": "0.0",
    }
    assert obs.envelope.time.ToDatetime(tzinfo=UTC) == TAKEN
    # Byte for byte what ingest makes of the same observation from the same source.
    same = to_message(
        item, tenant="ulsan-refining", source="/video/ulsan-refinery/cam-tf-501", received=RECEIVED
    )
    assert (same.payload, same.headers) == (message.payload, message.headers)
