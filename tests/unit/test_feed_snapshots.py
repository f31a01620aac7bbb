"""Detections' pictures on the city feed: `full` carries the tenant's own references, `redacted`
only references to the blurred copies (and only when its allow-list keeps `snapshot(s)`),
`counts` and `none` nothing; the NGSI-LD Alert carries them in `data` and stays valid; the city's
credentials may get a blurred copy and nothing of the hub's snapshots; the copies on the bus are
the blurred ones, with the headers asyncapi.yaml describes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from jsonschema import Draft7Validator

from services.common.embedded.nats_auth import load_users, save_users
from services.feed.credentials import imports, new_credential, publish_allow, regrant
from services.feed.domain.facts import Member
from services.feed.domain.ngsi import alert_entity, key_values
from services.feed.domain.policy import SharingPolicy
from services.feed.domain.projection import MEMBERS_CARRIED, project_alarm, project_incident
from services.feed.domain.snapshots import blurred, parse_blurred
from services.feed.snapshot_copies import copy_message, references
from services.video.adapters.messages import blurred_message
from services.video.adapters.snapshots import Snapshot
from tests.unit.feed_facts import PLACES, alarm, incident
from tests.unit.test_asyncapi import resolve
from tests.unit.test_feed_ngsi import validator

REF = "01KB7Q3X9ZC2M4N6P8R0S1T3V5"
VIDEO = f"/v1/snapshots/{REF}"
FRIGATE = "http://frigate.plant.example:5000/api/events/cam-fcc-1/snapshot.jpg"
BLURRED = f"feedsnap.ulsan-refining.ulsan-refinery.{REF}"


def policy(level: str, **more: object) -> SharingPolicy:
    return msgspec.convert({"level": level, **more}, SharingPolicy)


def camera_member(snapshot: str) -> Member:
    return Member(
        "cam-fcc-1--fall", "cam-fcc-1", "fall", "video.fall", "fcc-2", "safety", "emergency", True, snapshot
    )


def test_full_carries_the_tenants_own_references() -> None:
    facts = incident(members=(camera_member(VIDEO),), snapshots=(VIDEO, FRIGATE))
    shared = project_incident(facts, policy("full"), PLACES)
    assert shared is not None
    assert shared["snapshots"] == [VIDEO, FRIGATE]
    assert shared["members"][0]["snapshot"] == VIDEO
    shared_alarm = project_alarm(alarm(snapshot=VIDEO), policy("full"), PLACES)
    assert shared_alarm is not None and shared_alarm["snapshot"] == VIDEO


def test_redacted_carries_only_the_blurred_copies_of_the_video_services_pictures() -> None:
    facts = incident(members=(camera_member(VIDEO),), snapshots=(VIDEO, FRIGATE))
    shared = project_incident(facts, policy("redacted"), PLACES)
    assert shared is not None
    # A gateway's URL names a picture the hub holds no blurred copy of: it does not leave.
    assert shared["snapshots"] == [BLURRED]
    assert "members" not in shared
    assert "/v1/snapshots" not in json.dumps(shared) and "frigate" not in json.dumps(shared)
    shared_alarm = project_alarm(alarm(snapshot=VIDEO), policy("redacted"), PLACES)
    assert shared_alarm is not None and shared_alarm["snapshot"] == BLURRED
    without = project_alarm(alarm(snapshot=FRIGATE), policy("redacted"), PLACES)
    assert without is not None and without["snapshot"] is None


def test_a_redacted_allow_list_without_snapshots_carries_none() -> None:
    narrowed = policy("redacted", fields={"incident": ["type", "status"], "alarm": ["state"]})
    shared = project_incident(incident(snapshots=(VIDEO,)), narrowed, PLACES)
    assert shared is not None and set(shared) == {"id", "type", "status"}
    shared_alarm = project_alarm(alarm(snapshot=VIDEO), narrowed, PLACES)
    assert shared_alarm is not None and "snapshot" not in shared_alarm
    kept = policy("redacted", fields={"incident": ["snapshots"], "alarm": ["snapshot"]})
    assert project_incident(incident(snapshots=(VIDEO,)), kept, PLACES) == {
        "id": "01KAMR2R1FQ4T5D3Y6Z8W9X0AB",
        "snapshots": [BLURRED],
    }


@pytest.mark.parametrize("level", ["none", "counts"])
def test_counts_and_none_carry_no_picture(level: str) -> None:
    assert project_incident(incident(snapshots=(VIDEO,)), policy(level), PLACES) is None
    assert project_alarm(alarm(snapshot=VIDEO), policy(level), PLACES) is None


def test_an_incident_carries_each_picture_once_and_at_most_the_members_carried() -> None:
    many = tuple(f"/v1/snapshots/01KB{n:022d}" for n in range(MEMBERS_CARRIED + 10))
    shared = project_incident(incident(snapshots=(*many, many[0])), policy("redacted"), PLACES)
    assert shared is not None
    assert len(shared["snapshots"]) == MEMBERS_CARRIED
    assert shared["snapshots"][0] == f"feedsnap.ulsan-refining.ulsan-refinery.01KB{0:022d}"


@pytest.mark.parametrize("level", ["redacted", "full"])
def test_the_alert_carries_the_pictures_in_data_and_stays_valid(level: str) -> None:
    facts = incident(type="person_down", members=(camera_member(VIDEO),), snapshots=(VIDEO,))
    shared = project_incident(facts, policy(level), PLACES)
    assert shared is not None
    entity = alert_entity(shared, tenant=facts.tenant, site=facts.site, issued="2026-11-22T00:21:40Z")
    assert entity is not None
    errors = sorted(validator().iter_errors(key_values(entity)), key=lambda e: e.json_path)
    assert not errors, [f"{e.json_path}: {e.message}" for e in errors]
    assert entity["data"]["value"]["snapshots"] == [BLURRED if level == "redacted" else VIDEO]


def test_a_blurred_reference_reads_back_and_nothing_else_does() -> None:
    copy = blurred("ulsan-refining", "ulsan-refinery", VIDEO)
    assert copy is not None and copy.subject == BLURRED
    assert parse_blurred(BLURRED) == copy
    assert blurred("ulsan-refining", "ulsan-refinery", FRIGATE) is None
    for other in (VIDEO, "feedsnap.a.b", "feedsnap.a.b.c.d", f"feedsnap.*.b.{REF}", 7, None):
        assert parse_blurred(other) is None
    assert references({"snapshot": BLURRED, "snapshots": [BLURRED, VIDEO]}) == [copy]


def test_the_city_may_get_a_blurred_copy_and_nothing_of_the_hubs_snapshots() -> None:
    subjects = [imp.to or imp.subject for imp in imports("city-ulsan")]
    assert "HUB.API.STREAM.MSG.GET.FEED_SNAPSHOTS" in subjects
    assert "HUB.API.STREAM.MSG.GET.FEED_SNAPSHOTS" in publish_allow("city-ulsan")
    assert not [s for s in subjects if "SNAPSHOTS" in s and "FEED_SNAPSHOTS" not in s]


def test_the_blurred_copy_on_the_bus_is_the_blurred_one_with_the_headers_asyncapi_describes() -> None:
    snapshot = Snapshot(
        REF,
        "ulsan-refining",
        "ulsan-refinery",
        "cam-tf-501",
        datetime(2026, 11, 22, tzinfo=UTC),
        b"raw",
        b"blur",
        1,
    )
    message = blurred_message(snapshot)

    assert (message.subject, message.payload) == (f"snapshot.ulsan-refining.ulsan-refinery.{REF}", b"blur")
    errors = list(
        Draft7Validator(resolve("#/components/schemas/BlurredSnapshotHeaders")).iter_errors(message.headers)
    )
    assert not errors, errors[0].message
    copy = parse_blurred(BLURRED)
    assert copy is not None
    city_copy = copy_message(copy, b"blur")
    assert (city_copy.subject, city_copy.payload) == (BLURRED, b"blur")
    schema = resolve("#/components/schemas/FeedSnapshotHeaders")
    assert not list(Draft7Validator(schema).iter_errors(city_copy.headers))


def test_credentials_issued_before_pictures_are_granted_them_and_keep_their_secret(tmp_path: Path) -> None:
    store = tmp_path / "nats"
    credential = new_credential("city-ulsan", now=datetime(2026, 11, 1, tzinfo=UTC), by="admin")
    issued = credential.user
    earlier = msgspec.structs.replace(
        issued,
        imports=[imp for imp in issued.imports if "FEED_SNAPSHOTS" not in imp.subject],
        publish=[subject for subject in issued.publish if "FEED_SNAPSHOTS" not in subject],
    )
    save_users(store, [earlier])

    assert regrant(store) == ["city-ulsan"]
    [user] = load_users(store)
    assert user == issued  # the same secret (its hash), the grants of this release
    assert regrant(store) == []
