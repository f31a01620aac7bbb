"""What the store writes for a bus message, what it dead-letters, and how long it backs off."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import msgspec
import pytest

from services.common.bus.consumer import Poison, retry_delay
from services.common.contracts import ObservationBatch
from services.ingest.domain.checks import Checked
from services.ingest.domain.contract import BoxIn, PositionIn
from services.ingest.encode import encode_observations, to_message
from services.store.rows import COLUMNS, observation_rows
from tests.builders import MEASURED, RECEIVED, observation


@dataclass(frozen=True)
class FakeMsg:
    subject: str
    data: bytes


def message(**changes: Any) -> FakeMsg:
    out = to_message(observation(**changes), tenant="ulsan-refining", source="/k/1", received=RECEIVED)
    return FakeMsg(out.subject, out.payload)


def rows(msg: FakeMsg) -> list[dict[str, Any]]:
    return [dict(zip(COLUMNS, r, strict=True)) for r in observation_rows(msg)]  # type: ignore[arg-type]


def row(msg: FakeMsg) -> dict[str, Any]:
    (only,) = rows(msg)
    return only


def test_a_reading_becomes_a_row_with_its_columns() -> None:
    msg = message(id="gw-7:000123")

    assert row(msg) == {
        "id": "gw-7:000123",
        "time": MEASURED,
        "tenant": "ulsan-refining",
        "site": "ulsan-refinery",
        "device": "gd-cdu1-101",
        "kind": "gas.h2s",
        "value": 12.5,
        "unit": "ppm",
        "quality": 1,
        "confidence": None,
        "snapshot": None,
        "detail": None,
        "received": RECEIVED,
    }


def test_row_times_are_utc_aware() -> None:
    stored = row(message())

    assert stored["time"].utcoffset() == timedelta(0)
    assert stored["received"].utcoffset() == timedelta(0)


def test_a_detection_keeps_confidence_snapshot_and_its_details() -> None:
    stored = row(
        message(
            device="cam-tf-501",
            kind="video.fire",
            unit="1",
            value=None,
            confidence=0.875,
            quality="bad",
            snapshot="s3://frames/0001.jpg",
            box=BoxIn(x=0.25, y=0.5, width=0.125, height=0.0625),
            position=PositionIn(latitude=35.47187, longitude=129.351, altitude=18.5),
            attributes={"model": "yolo-fire-v3"},
        )
    )

    assert stored["value"] is None
    assert stored["confidence"] == 0.875
    assert stored["quality"] == 3
    assert stored["snapshot"] == "s3://frames/0001.jpg"
    assert msgspec.json.decode(stored["detail"]) == {
        "box": {"x": 0.25, "y": 0.5, "width": 0.125, "height": 0.0625},
        "position": {"latitude": 35.47187, "longitude": 129.351, "altitude": 18.5},
        "attributes": {"model": "yolo-fire-v3"},
    }


def test_a_quality_reason_is_kept_in_detail_under_its_api_name() -> None:
    fault = Checked(
        **msgspec.structs.asdict(observation(value=5000.0, quality="bad")),
        quality_reason="out_of_range: 5000 outside 0..100 ppm",
    )
    out = to_message(fault, tenant="ulsan-refining", source="/k/1", received=RECEIVED)

    stored = row(FakeMsg(out.subject, out.payload))

    assert (stored["value"], stored["quality"]) == (5000.0, 3)
    assert msgspec.json.decode(stored["detail"]) == {"qualityReason": "out_of_range: 5000 outside 0..100 ppm"}
    assert row(message(quality="bad"))["detail"] is None


def test_a_value_of_zero_is_stored_as_zero_not_as_missing() -> None:
    assert row(message(value=0.0))["value"] == 0.0


def test_a_batch_becomes_one_row_per_observation_in_posted_order() -> None:
    items = [
        observation(id=f"r-{n}", value=float(n), time=MEASURED + timedelta(seconds=n)) for n in (3, 1, 2)
    ]
    (out,) = encode_observations(items, tenant="ulsan-refining", source="/k/1", received=RECEIVED).messages

    stored = rows(FakeMsg(out.subject, out.payload))

    assert [r["id"] for r in stored] == ["r-3", "r-1", "r-2"]
    assert [r["value"] for r in stored] == [3.0, 1.0, 2.0]
    assert {r["device"] for r in stored} == {"gd-cdu1-101"}


@pytest.mark.parametrize("data", [b"\xff\xff\xff\xff", b"garbage bytes", b'{"id": "x"}'])
def test_bytes_that_are_not_an_observation_batch_are_poison(data: bytes) -> None:
    with pytest.raises(Poison):
        observation_rows(FakeMsg("obs.ulsan-refining.ulsan-refinery.gd-cdu1-101", data))  # type: ignore[arg-type]


def _batch_of(*devices: str, with_id: bool = True) -> bytes:
    batch = ObservationBatch()
    batch.envelope.tenant, batch.envelope.site = "ulsan-refining", "ulsan-refinery"
    for n, device in enumerate(devices):
        obs = batch.observations.add(device=device, kind="gas.h2s")
        obs.envelope.tenant, obs.envelope.site = "ulsan-refining", "ulsan-refinery"
        if with_id:
            obs.envelope.id = f"id-{n}"
    return batch.SerializeToString()


SUBJECT = "obs.ulsan-refining.ulsan-refinery.gd-cdu1-101"


def test_an_empty_batch_is_poison() -> None:
    with pytest.raises(Poison, match="no observation"):
        observation_rows(FakeMsg(SUBJECT, b""))  # type: ignore[arg-type]


def test_an_observation_without_an_id_is_poison() -> None:
    assert len(observation_rows(FakeMsg(SUBJECT, _batch_of("gd-cdu1-101")))) == 1  # type: ignore[arg-type]
    with pytest.raises(Poison, match="lacks an id"):
        observation_rows(FakeMsg(SUBJECT, _batch_of("gd-cdu1-101", with_id=False)))  # type: ignore[arg-type]


def test_a_batch_mixing_devices_is_poison() -> None:
    with pytest.raises(Poison, match="observation 1 is not of"):
        observation_rows(FakeMsg(SUBJECT, _batch_of("gd-cdu1-101", "gd-cdu1-102")))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "subject",
    [
        "obs.mipo-petrochem.ulsan-refinery.gd-cdu1-101",
        "obs.ulsan-refining.ulsan-refinery-east.gd-cdu1-101",
        "obs.ulsan-refining.ulsan-refinery.gd-cdu1-102",
        "deadletter.obs.ulsan-refining.ulsan-refinery.gd-cdu1-101",
    ],
)
def test_a_subject_that_does_not_match_the_envelope_is_poison(subject: str) -> None:
    with pytest.raises(Poison, match="subject"):
        observation_rows(FakeMsg(subject, message().data))  # type: ignore[arg-type]


# ---------------------------------------------------------------- consumer back-off


@pytest.mark.parametrize(
    ("deliveries", "delay"),
    [(0, 0.5), (1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (7, 30.0), (8, 30.0), (50, 30.0)],
)
def test_retry_delay_starts_at_half_a_second_and_doubles_up_to_30_s(deliveries: int, delay: float) -> None:
    assert retry_delay(deliveries) == delay


@pytest.mark.parametrize("deliveries", [1_024, 1_025, 5_000, 1_000_000])
def test_retry_delay_stays_at_30_s_however_often_a_message_was_delivered(deliveries: int) -> None:
    # JetStream keeps counting redeliveries through a long outage (no max_deliver is set):
    # at 30 s each, the 1025th delivery comes about 8.5 hours into a database outage.
    assert retry_delay(deliveries) == 30.0
