"""Frigate's `frigate/events` messages mapped onto the same `video.intrusion` observations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from services.video.adapters.frigate import FrigateCamera, FrigateEventError, decode, observations

CAMERAS = {
    "tank_farm_sw": FrigateCamera(
        site="ulsan-refinery",
        device="cam-tf-501",
        detect_width=1280,
        detect_height=720,
        restricted_zones=frozenset({"bund_t501"}),
        frigate_url="http://frigate.local:5000/",
    )
}


def person(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "1764576000.123456-x7k2qa",
        "camera": "tank_farm_sw",
        "label": "person",
        "sub_label": None,
        "score": 0.71,
        "top_score": 0.84,
        "false_positive": False,
        "box": [320, 180, 448, 540],
        "area": 46080,
        "region": [200, 100, 600, 600],
        "current_zones": [],
        "entered_zones": [],
        "stationary": False,
        "motionless_count": 0,
        "start_time": 1764576000.123456,
        "end_time": None,
        "frame_time": 1764576003.5,
        "has_snapshot": True,
        "attributes": {},
    }
    base.update(changes)
    return base


def event(kind: str, before: dict[str, Any] | None, after: dict[str, Any]) -> bytes:
    return msgspec.json.encode({"type": kind, "before": before, "after": after})


def test_entering_a_restricted_zone_is_one_intrusion() -> None:
    inside = person(current_zones=["bund_t501"], entered_zones=["bund_t501"])
    (obs,) = observations(decode(event("update", person(), inside)), CAMERAS)
    assert (obs.site, obs.device, obs.kind) == ("ulsan-refinery", "cam-tf-501", "video.intrusion")
    assert obs.confidence == pytest.approx(0.84)
    assert obs.time == datetime.fromtimestamp(1764576003.5, UTC)
    assert obs.box is not None
    assert (obs.box.x, obs.box.y, obs.box.width, obs.box.height) == pytest.approx((0.25, 0.25, 0.1, 0.5))
    assert obs.snapshot == "http://frigate.local:5000/api/events/1764576000.123456-x7k2qa/snapshot.jpg"
    assert obs.attributes["zone"] == "bund_t501" and obs.attributes["source"] == "frigate"
    assert obs.attributes["track_id"] == "1764576000.123456-x7k2qa"


def test_later_updates_and_a_redelivery_name_the_same_observation_or_none() -> None:
    inside = person(current_zones=["bund_t501"], entered_zones=["bund_t501"])
    first = observations(decode(event("update", person(), inside)), CAMERAS)
    again = observations(decode(event("update", person(), inside)), CAMERAS)
    assert [o.id for o in first] == [o.id for o in again]
    # Still inside on the next update: nothing new entered.
    assert (
        observations(decode(event("update", inside, person(score=0.9, **_zones("bund_t501")))), CAMERAS) == []
    )


def _zones(*zones: str) -> dict[str, list[str]]:
    return {"current_zones": list(zones), "entered_zones": list(zones)}


def test_a_new_event_already_in_the_zone_counts() -> None:
    assert len(observations(decode(event("new", None, person(**_zones("bund_t501")))), CAMERAS)) == 1


@pytest.mark.parametrize(
    "after",
    [
        person(false_positive=True, **_zones("bund_t501")),  # Frigate's own verdict
        person(label="car", **_zones("bund_t501")),  # not a watched label
        person(camera="gate_north", **_zones("bund_t501")),  # a camera not mapped
        person(**_zones("parking")),  # a zone that is not restricted
    ],
)
def test_what_is_not_an_intrusion_makes_no_observation(after: dict[str, Any]) -> None:
    assert observations(decode(event("update", person(), after)), CAMERAS) == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not JSON"),
        (b'{"type": "created", "after": {}}', "not a Frigate event"),
        (msgspec.json.encode({"type": "new", "after": {"camera": "tank_farm_sw"}}), "not a Frigate event"),
    ],
)
def test_a_message_that_is_not_an_event_is_refused_with_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(FrigateEventError, match=reason):
        decode(payload)


def test_an_event_that_makes_no_valid_observation_is_refused() -> None:
    bad = person(top_score=1.7, **_zones("bund_t501"))  # a score past 1 is clipped, not refused
    (obs,) = observations(decode(event("new", None, bad)), CAMERAS)
    assert obs.confidence == 1.0
    long_zone = "z" * 300
    cameras = {
        "tank_farm_sw": FrigateCamera("ulsan-refinery", "cam-tf-501", 1280, 720, frozenset({long_zone}))
    }
    with pytest.raises(FrigateEventError, match="no valid observation"):
        observations(decode(event("new", None, person(**_zones(long_zone)))), cameras)


def test_a_new_event_counts_the_zones_entered_while_it_was_a_false_positive() -> None:
    # Frigate sends `new` once an object stops being a false positive, with `before` its state as
    # one (frigate/object_processing.py): what it entered meanwhile was never reported.
    unreported = person(false_positive=True, **_zones("bund_t501"))
    (obs,) = observations(decode(event("new", unreported, person(**_zones("bund_t501")))), CAMERAS)
    assert obs.attributes["zone"] == "bund_t501"


def test_zones_and_labels_map_to_the_sites_zones_and_kinds() -> None:
    cameras = {
        "tank_farm_sw": FrigateCamera(
            "ulsan-refinery",
            "cam-tf-501",
            1280,
            720,
            frozenset({"bund_t501"}),
            labels=frozenset({"person", "car"}),
            site_zones={"bund_t501": "tank-farm"},
            kinds={"car": "video.vehicle_intrusion"},
        )
    }
    car_in = person(label="car", **_zones("bund_t501"))
    (car,) = observations(decode(event("update", person(), car_in)), cameras)
    assert (car.kind, car.attributes["zone"], car.attributes["frigate_zone"]) == (
        "video.vehicle_intrusion",
        "tank-farm",
        "bund_t501",
    )
    (walker,) = observations(decode(event("update", person(), person(**_zones("bund_t501")))), cameras)
    assert walker.kind == "video.intrusion"
