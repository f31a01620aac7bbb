"""The sharing policy: for each level the exact fields that leave, allow-lists within a level,
coarse locations, the delay, and policies refused with the path of what is wrong."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from services.feed.domain.facts import Position
from services.feed.domain.policy import AllowList, Kind, Level, SharingPolicy, tightens
from services.feed.domain.projection import (
    coarse_position,
    hour_closes,
    hour_of,
    project_alarm,
    project_counts,
    project_incident,
    release_at,
    snap_to_grid,
)
from tests.unit.feed_facts import EXACT, FCC2, PLACES, SECRETS, SITE, alarm, incident

REDACTED_INCIDENT = {
    "id",
    "type",
    "status",
    "severity",
    "urgency",
    "certainty",
    "confirmed",
    "change",
    "opened_at",
    "updated_at",
    "resolved_at",
    "zones",
    "location",
    "snapshots",
}
FULL_INCIDENT = REDACTED_INCIDENT | {
    "title",
    "members",
    "actions",
    "assignee",
    "resolution_code",
    "resolution_note",
    "counts",
    "note",
}


def policy(level: str, **more: object) -> SharingPolicy:
    return msgspec.convert({"level": level, **more}, SharingPolicy)


def test_none_lets_nothing_leave() -> None:
    none = policy("none")

    assert project_incident(incident(), none, PLACES) is None
    assert project_alarm(alarm(), none, PLACES) is None
    assert project_counts("fcc-2", hour_of(datetime.now(UTC)), 3, 9, none) is None


def test_a_site_without_a_policy_shares_nothing() -> None:
    assert SharingPolicy().level is Level.NONE
    assert project_incident(incident(), SharingPolicy(), PLACES) is None


def test_counts_shares_hourly_counts_per_zone_and_nothing_of_any_one_incident_or_alarm() -> None:
    counts = policy("counts")
    hour = datetime(2026, 11, 22, 9, tzinfo=UTC)

    assert project_incident(incident(), counts, PLACES) is None
    assert project_alarm(alarm(), counts, PLACES) is None
    assert project_counts("fcc-2", hour, 3, 9, counts) == {
        "zone": "fcc-2",
        "hour": "2026-11-22T09:00:00Z",
        "incidents": 3,
        "alarms": 9,
    }


def test_redacted_shares_exactly_type_severity_status_times_and_a_coarse_location() -> None:
    shared = project_incident(incident(), policy("redacted"), PLACES)

    assert shared == {
        "id": "01KAMR2R1FQ4T5D3Y6Z8W9X0AB",
        "type": "gas_release",
        "status": "acknowledged",
        "severity": "Extreme",
        "urgency": "Immediate",
        "certainty": "Observed",
        "confirmed": True,
        "change": "acknowledged",
        "opened_at": "2026-11-22T00:15:03Z",
        "updated_at": "2026-11-22T00:21:40Z",
        "resolved_at": None,
        "zones": ["fcc-2"],
        # The zone's centroid, not where the detector is.
        "location": {"type": "Point", "coordinates": [FCC2.lon, FCC2.lat]},
        # A gas release seen by no camera: no picture.
        "snapshots": [],
    }
    text = json.dumps(shared)
    assert not [secret for secret in SECRETS if secret in text]


def test_redacted_alarms_carry_no_device_rule_value_or_name_and_not_their_alarm_id() -> None:
    shared = project_alarm(alarm(), policy("redacted"), PLACES)

    assert shared is not None
    assert set(shared) == {
        "id",
        "zone",
        "condition",
        "alarm_class",
        "priority",
        "state",
        "active",
        "time",
        "location",
        "snapshot",
    }
    # The alarm id is `<device>--<rule>`: the transition's own id stands in for it.
    assert shared["id"] == "01KAMR2R1FQ4T5D3Y6Z8W9X0CD"
    assert not [secret for secret in SECRETS if secret in json.dumps(shared)]


def test_full_shares_everything_with_the_exact_position() -> None:
    shared = project_incident(incident(status="resolved", change="resolved"), policy("full"), PLACES)

    assert shared is not None
    assert set(shared) == FULL_INCIDENT
    assert shared["location"] == {"type": "Point", "coordinates": [EXACT.lon, EXACT.lat]}
    assert shared["resolved_at"] == "2026-11-22T00:21:40Z"
    assert shared["members"][0]["device"] == "gd-fcc2-203"
    full_alarm = project_alarm(alarm(), policy("full"), PLACES)
    assert full_alarm is not None and full_alarm["id"] == "gd-fcc2-203--h2s-high-high"


def test_an_allow_list_narrows_a_level_and_never_widens_it() -> None:
    narrowed = policy("redacted", fields={"incident": ["type", "severity", "title", "members"]})

    shared = project_incident(incident(), narrowed, PLACES)

    # title and members are not redacted fields: naming them lets nothing more out. The id stays.
    assert shared == {"id": "01KAMR2R1FQ4T5D3Y6Z8W9X0AB", "type": "gas_release", "severity": "Extreme"}


def test_an_empty_allow_list_of_counts_stops_the_counts() -> None:
    silent = policy("counts", fields={"kpi": []})

    assert project_counts("fcc-2", datetime(2026, 11, 22, tzinfo=UTC), 1, 1, silent) is None


def test_a_grid_snaps_every_point_of_a_cell_to_its_centre() -> None:
    grid = policy("redacted", grid_m=500)
    near = Position(EXACT.lat + 0.0001, EXACT.lon + 0.0001)

    first = project_incident(incident(), grid, PLACES)
    second = project_incident(incident(position=near), grid, PLACES)

    assert first is not None and second is not None
    assert first["location"] == second["location"]
    lon, lat = first["location"]["coordinates"]
    # Within half a cell's diagonal of the exact point, but not the exact point.
    assert (lat, lon) != (EXACT.lat, EXACT.lon)
    assert abs(lat - EXACT.lat) * 111_320 <= 250.0
    assert abs(lon - EXACT.lon) * 111_320 * 0.815 <= 250.0


def test_cells_of_a_grid_are_grid_m_apart() -> None:
    a = snap_to_grid(Position(35.0, 129.0), 1000)
    b = snap_to_grid(Position(35.0 + 1000 / 111_320, 129.0), 1000)

    assert round((b.lat - a.lat) * 111_320) == 1000


def test_without_a_zone_a_redacted_location_is_the_sites() -> None:
    assert coarse_position(EXACT, (), PLACES, None) == SITE
    assert coarse_position(None, ("unknown-zone",), PLACES, None) == SITE
    assert coarse_position(EXACT, ("cdu-1", "fcc-2"), PLACES, None) == PLACES.zones["cdu-1"]


def test_a_delay_holds_an_event_back() -> None:
    at = datetime(2026, 11, 22, 0, 15, tzinfo=UTC)

    assert release_at(at, policy("redacted", delay_s=600)) == at + timedelta(minutes=10)
    assert release_at(at, policy("redacted")) == at


def test_an_hour_closes_after_its_end_and_a_grace() -> None:
    at = datetime(2026, 11, 22, 9, 41, 7, tzinfo=UTC)

    assert hour_of(at) == datetime(2026, 11, 22, 9, tzinfo=UTC)
    assert hour_closes(hour_of(at), timedelta(seconds=30)) == datetime(2026, 11, 22, 10, 0, 30, tzinfo=UTC)


def test_tightening_is_told_from_loosening() -> None:
    assert tightens(policy("full"), policy("redacted"))
    assert tightens(policy("redacted"), policy("redacted", fields={"incident": ["type"]}))
    assert not tightens(policy("counts"), policy("redacted"))
    assert not tightens(policy("none"), policy("full"))
    assert SharingPolicy(level=Level.REDACTED, fields=AllowList(incident=("type",))).allowed(
        Kind.INCIDENT
    ) == {
        "id",
        "type",
    }


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"level": "public"}, "$.level"),
        ({"level": "redacted", "fields": {"incident": ["type", "device_id"]}}, "$.fields.incident[1]"),
        ({"level": "redacted", "fields": {"camera": ["type"]}}, "$.fields.camera"),
        ({"level": "redacted", "grid_m": 0}, "$.grid_m"),
        ({"level": "redacted", "grid_m": -50}, "$.grid_m"),
        ({"level": "redacted", "delay_s": -1}, "$.delay_s"),
        ({"level": "redacted", "colour": "red"}, "$.colour"),
    ],
)
def test_a_policy_naming_an_unknown_field_or_level_or_a_grid_not_above_zero_is_refused_with_its_path(
    body: dict[str, object], path: str
) -> None:
    with pytest.raises(msgspec.ValidationError) as refused:
        msgspec.json.decode(json.dumps(body), type=SharingPolicy)

    message = str(refused.value)
    assert path in message or path.rsplit(".", 1)[1] in message, message
