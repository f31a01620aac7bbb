"""The bus messages of accepted observations: subject, CloudEvents headers, payload, ids, batching."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from ulid import ULID

from services.common.bus.publisher import OutgoingMessage
from services.common.contracts import Observation, ObservationBatch, Quality
from services.ingest.domain.checks import Checked
from services.ingest.domain.contract import BoxIn, ObservationIn, PositionIn
from services.ingest.encode import Encoded, encode_observations, to_message
from tests.builders import MEASURED, RECEIVED, observation

TENANT = "ulsan-refining"
SOURCE = "/ingest/keys/k1"


def encode(item: ObservationIn, received: datetime = RECEIVED) -> OutgoingMessage:
    return to_message(item, tenant=TENANT, source=SOURCE, received=received)


def decoded(message: OutgoingMessage) -> Observation:
    (obs,) = ObservationBatch.FromString(message.payload).observations
    return obs


def encode_many(items: list[ObservationIn], **limits: int) -> Encoded:
    return encode_observations(items, tenant=TENANT, source=SOURCE, received=RECEIVED, **limits)


def ulid_time(message_id: str) -> datetime:
    return ULID.from_str(message_id).datetime


def test_the_subject_names_tenant_site_and_device() -> None:
    assert encode(observation()).subject == "obs.ulsan-refining.ulsan-refinery.gd-cdu1-101"


def test_the_headers_are_a_cloudevent_whose_id_is_the_dedup_id() -> None:
    message = encode(observation())
    batch = ObservationBatch.FromString(message.payload)
    headers = message.headers

    assert headers["Nats-Msg-Id"] == headers["ce-id"] == batch.envelope.id != ""
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-type"] == "org.safetyhub.observation.batch.v1"
    assert headers["ce-source"] == SOURCE


def test_ce_time_is_the_measurement_time_in_rfc3339_utc() -> None:
    ce_time = encode(observation()).headers["ce-time"]

    assert ce_time == "2026-11-22T00:15:00.123456Z"
    assert datetime.fromisoformat(ce_time) == MEASURED


def test_the_payload_round_trips_a_reading() -> None:
    obs = decoded(encode(observation(quality="uncertain", attributes={"loop": "4-20mA", "firmware": "2.1"})))

    assert (obs.device, obs.kind, obs.value, obs.unit) == ("gd-cdu1-101", "gas.h2s", 12.5, "ppm")
    assert obs.quality == Quality.QUALITY_UNCERTAIN
    assert obs.envelope.time.ToDatetime(tzinfo=UTC) == MEASURED
    assert obs.received.ToDatetime(tzinfo=UTC) == RECEIVED
    assert dict(obs.attributes) == {"loop": "4-20mA", "firmware": "2.1"}
    assert (obs.envelope.tenant, obs.envelope.site, obs.envelope.source) == (TENANT, "ulsan-refinery", SOURCE)
    assert obs.envelope.type == "org.safetyhub.observation.v1"
    assert obs.envelope.schema_version == 1
    assert not obs.HasField("confidence")
    assert not obs.HasField("box")


def test_the_payload_round_trips_a_detection_with_box_and_position() -> None:
    item = observation(
        device="cam-tf-501",
        kind="video.fire",
        unit="1",
        value=None,
        confidence=0.875,
        box=BoxIn(x=0.25, y=0.5, width=0.125, height=0.0625),
        position=PositionIn(latitude=35.47187, longitude=129.351, altitude=18.5),
        snapshot="s3://frames/cam-tf-501/0001.jpg",
    )

    obs = decoded(encode(item))

    assert not obs.HasField("value")
    assert obs.confidence == 0.875
    assert (obs.box.x, obs.box.y, obs.box.width, obs.box.height) == (0.25, 0.5, 0.125, 0.0625)
    assert (obs.position.latitude, obs.position.longitude) == (35.47187, 129.351)
    assert obs.position.altitude == 18.5
    assert obs.snapshot == "s3://frames/cam-tf-501/0001.jpg"


def test_a_position_without_altitude_has_none() -> None:
    obs = decoded(encode(observation(position=PositionIn(latitude=35.4, longitude=129.3))))

    assert obs.HasField("position")
    assert not obs.position.HasField("altitude")


def test_a_zero_value_is_kept_as_a_value() -> None:
    obs = decoded(encode(observation(value=0.0)))

    assert obs.HasField("value")
    assert obs.value == 0.0


@pytest.mark.parametrize(
    ("name", "quality"),
    [
        ("good", Quality.QUALITY_GOOD),
        ("bad", Quality.QUALITY_BAD),
        ("QUALITY_BAD", Quality.QUALITY_BAD),
        ("QUALITY_UNCERTAIN", Quality.QUALITY_UNCERTAIN),
    ],
)
def test_quality_names_map_to_the_enum(name: str, quality: int) -> None:
    assert decoded(encode(observation(quality=name))).quality == quality


def test_without_a_time_the_observation_is_stamped_with_the_receive_time() -> None:
    message = encode(observation(time=None))
    obs = decoded(message)

    assert obs.envelope.time.ToDatetime(tzinfo=UTC) == RECEIVED
    assert datetime.fromisoformat(message.headers["ce-time"]) == RECEIVED


def test_a_client_chosen_id_is_the_observations_id() -> None:
    message = encode(observation(id="gw-7:000123"))

    assert decoded(message).envelope.id == "gw-7:000123"
    assert decoded(message).envelope.correlation_id == "gw-7:000123"


def test_a_batch_of_one_is_not_deduplicated_on_the_raw_client_id() -> None:
    # The stream's deduplication id of a single reading is derived from tenant, id and time: the
    # raw client id would make another tenant's reading (or this one at another time) a duplicate.
    message = encode(observation(id="gw-7:000123"))

    assert message.headers["Nats-Msg-Id"] != "gw-7:000123"
    assert str(ULID.from_str(message.headers["Nats-Msg-Id"])) == message.headers["Nats-Msg-Id"]


def test_a_retry_of_an_item_with_an_id_but_no_time_gets_the_same_stream_id() -> None:
    # Stamped with the receive time, the retry is another (id, time) for the store; the stream's
    # deduplication id leaves that time out, so JetStream drops the retry within its window.
    first = encode(observation(id="gw-7:000123", time=None), received=RECEIVED)
    retry = encode(observation(id="gw-7:000123", time=None), received=RECEIVED + timedelta(seconds=3))
    anonymous = encode(observation(time=None), received=RECEIVED)
    anonymous_retry = encode(observation(time=None), received=RECEIVED + timedelta(seconds=3))

    assert first.headers["Nats-Msg-Id"] == retry.headers["Nats-Msg-Id"]
    assert anonymous.headers["Nats-Msg-Id"] != anonymous_retry.headers["Nats-Msg-Id"]


def test_the_correlation_id_defaults_to_the_id_and_a_client_one_is_kept() -> None:
    own = decoded(encode(observation()))
    chosen = decoded(encode(observation(correlation_id="shift-42")))

    assert own.envelope.correlation_id == own.envelope.id
    assert chosen.envelope.correlation_id == "shift-42"
    assert chosen.envelope.id != "shift-42"


def test_without_a_client_id_the_same_reading_gets_the_same_id() -> None:
    # A gateway retrying a POST after a timeout: the retry arrives later but must deduplicate.
    first = encode(observation(), received=RECEIVED)
    retry = encode(observation(), received=RECEIVED + timedelta(seconds=30))

    assert first.headers["Nats-Msg-Id"] == retry.headers["Nats-Msg-Id"]


@pytest.mark.parametrize(
    "other",
    [
        {"value": 12.6},
        {"time": MEASURED + timedelta(milliseconds=1)},
        {"time": MEASURED + timedelta(microseconds=1)},
        {"kind": "gas.lel", "unit": "%LEL"},
        {"device": "gd-cdu1-102"},
        {"site": "ulsan-refinery-east"},
        {"value": None, "confidence": 0.5},
    ],
)
def test_without_a_client_id_a_different_reading_gets_a_different_id(other: dict[str, Any]) -> None:
    assert encode(observation()).headers["ce-id"] != encode(observation(**other)).headers["ce-id"]


def test_the_same_reading_of_another_tenant_gets_a_different_id() -> None:
    mine = encode(observation())
    theirs = to_message(observation(), tenant="mipo-petrochem", source=SOURCE, received=RECEIVED)

    assert mine.headers["ce-id"] != theirs.headers["ce-id"]


def test_a_derived_id_is_a_ulid_stamped_with_the_observation_time() -> None:
    message_id = decoded(encode(observation())).envelope.id

    assert len(message_id) == 26
    assert str(ULID.from_str(message_id)) == message_id
    assert ulid_time(message_id) == MEASURED.replace(microsecond=123000)


def test_derived_ids_sort_by_observation_time_not_by_arrival() -> None:
    times = [MEASURED + timedelta(seconds=s) for s in (0, 0.002, 1, 60, 86_400)]
    # Encoded newest first and each received later than the one before.
    ids = [
        encode(observation(time=moment, value=float(n)), received=RECEIVED + timedelta(seconds=n)).headers[
            "ce-id"
        ]
        for n, moment in enumerate(reversed(times))
    ]

    assert sorted(ids) == list(reversed(ids))


# ---------------------------------------------------------------- one message per device and request


def reading(device: str, n: int, **changes: Any) -> ObservationIn:
    return observation(device=device, value=float(n), time=MEASURED + timedelta(seconds=n), **changes)


def batches(encoded: Encoded) -> list[ObservationBatch]:
    return [ObservationBatch.FromString(m.payload) for m in encoded.messages]


def test_a_post_becomes_one_message_per_device_in_posted_order() -> None:
    items = [reading("gd-cdu1-101", 0), reading("gd-cdu1-102", 1), reading("gd-cdu1-101", 2)]

    encoded = encode_many(items)

    assert [m.subject for m in encoded.messages] == [
        "obs.ulsan-refining.ulsan-refinery.gd-cdu1-101",
        "obs.ulsan-refining.ulsan-refinery.gd-cdu1-102",
    ]
    first, second = batches(encoded)
    assert [o.value for o in first.observations] == [0.0, 2.0]
    assert [o.value for o in second.observations] == [1.0]
    # Ids are listed per posted item, in the order of the post.
    assert encoded.ids == [
        first.observations[0].envelope.id,
        second.observations[0].envelope.id,
        first.observations[1].envelope.id,
    ]
    assert encoded.oversized == []


def test_the_batch_envelope_names_tenant_site_and_the_earliest_time() -> None:
    items = [reading("gd-cdu1-101", 5), reading("gd-cdu1-101", 2), reading("gd-cdu1-101", 9)]

    (message,) = encode_many(items).messages
    env = ObservationBatch.FromString(message.payload).envelope

    assert (env.tenant, env.site, env.source) == (TENANT, "ulsan-refinery", SOURCE)
    assert env.type == "org.safetyhub.observation.batch.v1"
    assert env.time.ToDatetime(tzinfo=UTC) == MEASURED + timedelta(seconds=2)
    assert datetime.fromisoformat(message.headers["ce-time"]) == MEASURED + timedelta(seconds=2)
    assert message.headers["Nats-Msg-Id"] == message.headers["ce-id"] == env.id == env.correlation_id


def test_a_retried_post_gets_the_same_batch_ids_so_jetstream_drops_it() -> None:
    items = [reading("gd-cdu1-101", n) for n in range(5)]
    first = encode_observations(items, tenant=TENANT, source=SOURCE, received=RECEIVED)
    retry = encode_observations(items, tenant=TENANT, source=SOURCE, received=RECEIVED + timedelta(seconds=9))

    assert [m.headers["Nats-Msg-Id"] for m in first.messages] == [
        m.headers["Nats-Msg-Id"] for m in retry.messages
    ]


def test_a_batch_of_other_observations_gets_another_id() -> None:
    one = encode_many([reading("gd-cdu1-101", n) for n in range(5)]).messages[0]
    fewer = encode_many([reading("gd-cdu1-101", n) for n in range(4)]).messages[0]

    assert one.headers["Nats-Msg-Id"] != fewer.headers["Nats-Msg-Id"]
    # ... and neither is the id of one of its observations.
    assert one.headers["Nats-Msg-Id"] not in encode_many([reading("gd-cdu1-101", n) for n in range(5)]).ids


def test_a_device_with_more_readings_than_one_message_takes_is_split_in_order() -> None:
    items = [reading("gd-cdu1-101", n) for n in range(7)]

    encoded = encode_many(items, max_per_message=3)

    assert [len(b.observations) for b in batches(encoded)] == [3, 3, 1]
    assert [o.value for b in batches(encoded) for o in b.observations] == [float(n) for n in range(7)]


def test_a_batch_over_the_payload_limit_is_halved_until_it_fits() -> None:
    items = [reading("gd-cdu1-101", n, attributes={"note": "x" * 300}) for n in range(8)]
    single = len(to_message(items[0], tenant=TENANT, source=SOURCE, received=RECEIVED).payload)

    encoded = encode_many(items, max_payload=single * 3)

    assert all(len(m.payload) <= single * 3 for m in encoded.messages)
    assert [len(b.observations) for b in batches(encoded)] == [2, 2, 2, 2]
    assert len(set(encoded.ids)) == 8


def test_an_observation_larger_than_any_message_is_reported_not_sent() -> None:
    items = [reading("gd-cdu1-101", 0), reading("gd-cdu1-101", 1, attributes={"blob": "x" * 5_000})]

    encoded = encode_many(items, max_payload=2_000)

    assert encoded.oversized == [1]
    assert encoded.ids[1] == ""
    assert [o.value for b in batches(encoded) for o in b.observations] == [0.0]


def sent(encoded: Encoded) -> list[Observation]:
    return [o for b in batches(encoded) for o in b.observations]


def test_an_id_repeated_within_a_post_at_the_same_time_travels_once_and_is_listed_for_each_item() -> None:
    items = [
        reading("gd-cdu1-101", 0, id="gw-1"),
        reading("gd-cdu1-102", 0, id="gw-1"),  # the same id and time on another device: a retry
        reading("gd-cdu1-101", 0),
        reading("gd-cdu1-101", 0),  # the same reading twice without an id: the same derived id
    ]

    encoded = encode_many(items)

    assert [o.envelope.id for o in sent(encoded)] == ["gw-1", encoded.ids[2]]
    assert sent(encoded)[0].device == "gd-cdu1-101"
    assert encoded.ids[:2] == ["gw-1", "gw-1"]
    assert encoded.ids[3] == encoded.ids[2]
    assert [m.subject.rsplit(".", 1)[1] for m in encoded.messages] == ["gd-cdu1-101"]


def test_a_reused_id_at_the_same_time_with_another_value_keeps_the_first_value() -> None:
    first = observation(id="gw-1", value=12.5)
    later = [
        observation(id="gw-1", value=99.0),
        observation(id="gw-1", value=1.0, time=MEASURED.astimezone(UTC)),
    ]

    encoded = encode_many([first, *later])

    assert [(o.envelope.id, o.value) for o in sent(encoded)] == [("gw-1", 12.5)]
    assert encoded.ids == ["gw-1"] * 3


def test_a_reused_id_at_another_time_is_another_observation() -> None:
    items = [
        reading("gd-cdu1-101", 0, id="gw-1"),
        reading("gd-cdu1-101", 1, id="gw-1"),
        reading("gd-cdu1-102", 2, id="gw-1"),
    ]

    encoded = encode_many(items)

    assert [(o.device, o.value) for o in sent(encoded)] == [
        ("gd-cdu1-101", 0.0),
        ("gd-cdu1-101", 1.0),
        ("gd-cdu1-102", 2.0),
    ]
    assert {o.envelope.id for o in sent(encoded)} == {"gw-1"}


def nats_ids(items: list[ObservationIn], *, tenant: str = TENANT, received: datetime = RECEIVED) -> list[str]:
    encoded = encode_observations(items, tenant=tenant, source=SOURCE, received=received)
    return [m.headers["Nats-Msg-Id"] for m in encoded.messages]


@pytest.mark.parametrize("size", [1, 3])
def test_the_same_client_ids_in_two_tenants_travel_under_different_message_ids(size: int) -> None:
    items = [reading("gd-cdu1-101", n, id=f"shared-id-{n}") for n in range(size)]

    assert nats_ids(items, tenant="mipo-petrochem") != nats_ids(items, tenant="ulsan-refining")


@pytest.mark.parametrize("size", [1, 3])
def test_message_ids_depend_on_member_times_not_values_or_arrival(size: int) -> None:
    items = [reading("gd-cdu1-101", n, id=f"gw-{n}") for n in range(size)]
    other_values = [msgspec.structs.replace(i, value=(i.value or 0) + 7) for i in items]
    other_times = [msgspec.structs.replace(i, time=MEASURED + timedelta(hours=1)) for i in items[:1]] + items[
        1:
    ]

    # A retry arrives later, maybe with another value for the same reading: JetStream drops it,
    # as the store would keep the first copy anyway.
    assert nats_ids(items) == nats_ids(items, received=RECEIVED + timedelta(seconds=30))
    assert nats_ids(items) == nats_ids(other_values)
    # The same ids at another time are other observations: another message.
    assert nats_ids(items) != nats_ids(other_times)


def test_an_out_of_range_reading_carries_its_quality_reason_and_is_listed_once() -> None:
    fault = Checked(
        site="ulsan-refinery",
        device="gd-cdu1-101",
        kind="gas.h2s",
        id="gw-9",
        time=MEASURED,
        value=5000.0,
        unit="ppm",
        quality="bad",
        quality_reason="out_of_range: 5000 outside 0..100 ppm",
    )

    encoded = encode_many([fault, reading("gd-cdu1-102", 1), fault])

    obs = sent(encoded)
    assert [(o.quality, o.quality_reason) for o in obs] == [
        (Quality.QUALITY_BAD, "out_of_range: 5000 outside 0..100 ppm"),
        (Quality.QUALITY_GOOD, ""),
    ]
    assert encoded.out_of_range == ["gas.h2s"]
