"""Checks against the site registry and the caller's key: which field is refused, or why the key is."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.common.auth.principal import Principal
from services.common.sites.registry import SiteRegistry
from services.ingest.domain.checks import Checked, ItemError, Refusal, authorize, check
from services.ingest.domain.contract import ObservationIn
from tests.builders import KST
from tests.builders import observation as build_observation

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 22, 0, 15, tzinfo=UTC)
MAX_FUTURE = timedelta(seconds=300)


@pytest.fixture(scope="module")
def registry() -> SiteRegistry:
    return SiteRegistry.load(
        [REPO / "sites" / "ulsan-demo.yaml", REPO / "tests" / "fixtures" / "second-refinery-site.yaml"]
    )


def observation(**changes: Any) -> ObservationIn:
    """A reading taken two seconds before NOW, the checks' clock."""
    return build_observation(**{"time": NOW - timedelta(seconds=2), **changes})


def error_of(
    item: ObservationIn,
    index: int,
    registry: SiteRegistry,
    now: datetime,
    max_future: timedelta,
    *,
    max_age: timedelta | None = None,
) -> ItemError | None:
    """Why `check` refuses the item, or None when it passes."""
    result = check(item, index, registry, now, max_future, max_age=max_age)
    return result if isinstance(result, ItemError) else None


def test_a_reading_older_than_the_kept_history_is_refused_naming_time(registry: SiteRegistry) -> None:
    thirty_days = timedelta(days=30)
    inside = observation(time=NOW - thirty_days + timedelta(minutes=1))
    outside = observation(time=NOW - thirty_days - timedelta(minutes=1))

    assert error_of(inside, 0, registry, NOW, MAX_FUTURE, max_age=thirty_days) is None
    error = error_of(outside, 3, registry, NOW, MAX_FUTURE, max_age=thirty_days)
    assert error is not None
    assert (error.index, error.field) == (3, "time")
    assert "30 days" in error.detail and "ingest.max_age_days" in error.detail
    # Without a retention limit the store keeps everything, so nothing is too old.
    assert error_of(outside, 3, registry, NOW, MAX_FUTURE, max_age=None) is None


def refused_field(item: ObservationIn, registry: SiteRegistry, index: int = 0) -> str | None:
    error = error_of(item, index, registry, NOW, MAX_FUTURE)
    return None if error is None else error.field


def gateway(sites: frozenset[str] | None = None, tenant: str = "ulsan-refining") -> Principal:
    return Principal(key_id="k1", tenant=tenant, role="gateway", sites=sites)


# ---------------------------------------------------------------- check


def test_a_registered_reading_passes(registry: SiteRegistry) -> None:
    assert error_of(observation(), 0, registry, NOW, MAX_FUTURE) is None


def test_a_detection_with_a_confidence_and_no_value_passes(registry: SiteRegistry) -> None:
    item = observation(device="cam-tf-501", kind="video.fire", unit="1", value=None, confidence=0.8)

    assert refused_field(item, registry) is None


def test_the_unit_may_be_left_out(registry: SiteRegistry) -> None:
    assert refused_field(observation(unit=None), registry) is None


def test_a_site_from_another_file_is_known(registry: SiteRegistry) -> None:
    item = observation(site="ulsan-refinery-east", device="gd-hcr1-101")

    assert refused_field(item, registry) is None


def test_an_unknown_site_is_refused_naming_site(registry: SiteRegistry) -> None:
    error = error_of(observation(site="busan-refinery"), 4, registry, NOW, MAX_FUTURE)

    assert error is not None
    assert (error.index, error.field) == (4, "site")
    assert "busan-refinery" in error.detail


@pytest.mark.parametrize(
    "device",
    [
        "gd-cdu1-999",
        "gd-btx-101",  # registered, but at mipo-aromatics
        "GD-CDU1-101",
    ],
)
def test_a_device_not_registered_at_the_site_is_refused_naming_device(
    registry: SiteRegistry, device: str
) -> None:
    error = error_of(observation(device=device), 2, registry, NOW, MAX_FUTURE)

    assert error is not None
    assert (error.index, error.field) == (2, "device")
    assert device in error.detail


def test_a_kind_the_device_does_not_measure_is_refused_naming_kind(registry: SiteRegistry) -> None:
    # gd-cdu1-101 measures gas.lel and gas.h2s, not carbon monoxide.
    error = error_of(observation(kind="gas.co"), 0, registry, NOW, MAX_FUTURE)

    assert error is not None
    assert error.field == "kind"
    assert "gas.co" in error.detail


@pytest.mark.parametrize("unit", ["ppb", "PPM", "%LEL"])
def test_a_unit_other_than_the_registered_one_is_refused_naming_unit(
    registry: SiteRegistry, unit: str
) -> None:
    error = error_of(observation(unit=unit), 0, registry, NOW, MAX_FUTURE)

    assert error is not None
    assert error.field == "unit"
    assert "ppm" in error.detail  # tells the gateway which unit is expected


@pytest.mark.parametrize("quality", ["good", "QUALITY_GOOD"])
def test_a_good_observation_without_value_or_confidence_is_refused_naming_value(
    registry: SiteRegistry, quality: str
) -> None:
    assert refused_field(observation(value=None, quality=quality), registry) == "value"


@pytest.mark.parametrize("quality", ["bad", "QUALITY_BAD", "uncertain", "QUALITY_UNCERTAIN"])
def test_a_faulty_device_may_report_without_a_value(registry: SiteRegistry, quality: str) -> None:
    assert refused_field(observation(value=None, quality=quality), registry) is None


def test_a_time_without_utc_offset_is_refused_naming_time(registry: SiteRegistry) -> None:
    naive = datetime(2026, 11, 22, 9, 15)

    assert refused_field(observation(time=naive), registry) == "time"


def test_a_time_beyond_max_future_is_refused_naming_time(registry: SiteRegistry) -> None:
    error = error_of(observation(time=NOW + timedelta(minutes=10)), 0, registry, NOW, MAX_FUTURE)

    assert error is not None
    assert error.field == "time"
    assert "300" in error.detail


def test_the_future_limit_holds_in_any_utc_offset(registry: SiteRegistry) -> None:
    ahead = (NOW + timedelta(minutes=10)).astimezone(KST)

    assert refused_field(observation(time=ahead), registry) == "time"


@pytest.mark.parametrize(
    "moment",
    [
        NOW + timedelta(minutes=1),
        NOW + MAX_FUTURE,
        (NOW + timedelta(minutes=1)).astimezone(KST),
        NOW - timedelta(days=3),
    ],
)
def test_a_time_within_max_future_or_in_the_past_is_accepted(
    registry: SiteRegistry, moment: datetime
) -> None:
    assert refused_field(observation(time=moment), registry) is None


def test_no_time_is_accepted(registry: SiteRegistry) -> None:
    assert refused_field(observation(time=None), registry) is None


# ---------------------------------------------------------------- authorize


def test_a_gateway_of_the_tenant_may_post_for_every_site_of_the_tenant(registry: SiteRegistry) -> None:
    for site, device in [("ulsan-refinery", "gd-cdu1-101"), ("ulsan-refinery-east", "gd-hcr1-101")]:
        assert authorize(observation(site=site, device=device), 0, gateway(), registry) is None


def test_an_admin_may_post(registry: SiteRegistry) -> None:
    admin = Principal(key_id="k2", tenant="ulsan-refining", role="admin", sites=None)

    assert authorize(observation(), 0, admin, registry) is None


def test_a_key_of_another_tenant_is_refused(registry: SiteRegistry) -> None:
    refusal = authorize(observation(), 5, gateway(tenant="mipo-petrochem"), registry)

    assert refusal == Refusal(5, "ulsan-refinery", "this key may not post for site 'ulsan-refinery'")


def test_a_key_limited_to_one_site_is_refused_for_another_site_naming_the_allowed_sites(
    registry: SiteRegistry,
) -> None:
    key = gateway(sites=frozenset({"ulsan-refinery"}))
    item = observation(site="ulsan-refinery-east", device="gd-hcr1-101")

    refusal = authorize(item, 1, key, registry)

    assert isinstance(refusal, Refusal)
    assert (refusal.index, refusal.site, refusal.field) == (1, "ulsan-refinery-east", "site")
    # Names the site the key may post for (not merely repeating the refused one).
    assert re.search(r"ulsan-refinery(?!-east)", refusal.reason)


@pytest.mark.parametrize("sites", [None, frozenset({"ulsan-refinery"})], ids=["any-site", "one-site"])
def test_an_unknown_site_and_another_tenants_site_get_the_same_answer(
    registry: SiteRegistry, sites: frozenset[str] | None
) -> None:
    # A different answer for a site that does not exist would tell a caller which site ids
    # other tenants have: mipo-aromatics is mipo-petrochem's, busan-refinery is nobody's.
    key = gateway(sites=sites)

    def answer(site: str) -> tuple[str, str]:
        refusal = authorize(observation(site=site), 0, key, registry)
        assert isinstance(refusal, Refusal)
        return refusal.field, refusal.reason.replace(site, "<site>")

    theirs, unknown = answer("mipo-aromatics"), answer("busan-refinery")
    assert theirs == unknown
    assert theirs[0] == "site"
    assert theirs[1].startswith("this key may not post for site '<site>'")
    if sites is not None:  # ... and a site of the key's own tenant outside its sites, too
        assert answer("ulsan-refinery-east") == theirs


def test_a_key_limited_to_one_site_may_post_for_that_site(registry: SiteRegistry) -> None:
    assert authorize(observation(), 0, gateway(sites=frozenset({"ulsan-refinery"})), registry) is None


def test_a_device_key_may_post_for_its_device_only_naming_the_allowed_ones(registry: SiteRegistry) -> None:
    key = Principal(
        key_id="k4",
        tenant="ulsan-refining",
        role="gateway",
        sites=frozenset({"ulsan-refinery"}),
        devices=frozenset({"gd-cdu1-101"}),
    )

    assert authorize(observation(), 0, key, registry) is None
    refusal = authorize(observation(device="gd-cdu1-102"), 2, key, registry)
    assert isinstance(refusal, Refusal)
    assert (refusal.index, refusal.field) == (2, "device")
    assert "gd-cdu1-101" in refusal.reason


@pytest.mark.parametrize("role", ["viewer", "responder", "operator"])
def test_a_role_that_may_not_ingest_is_refused_naming_the_role(registry: SiteRegistry, role: str) -> None:
    key = Principal(key_id="k3", tenant="ulsan-refining", role=role, sites=None)  # type: ignore[arg-type]

    refusal = authorize(observation(), 0, key, registry)

    assert isinstance(refusal, Refusal)
    assert role in refusal.reason


def test_an_unknown_site_is_refused_like_a_forbidden_one(registry: SiteRegistry) -> None:
    refusal = authorize(observation(site="busan-refinery"), 3, gateway(), registry)

    assert refusal == Refusal(3, "busan-refinery", "this key may not post for site 'busan-refinery'")


# ---------------------------------------------------------------- what check completes


def passed(item: ObservationIn, registry: SiteRegistry) -> ObservationIn:
    result = check(item, 0, registry, NOW, MAX_FUTURE)
    assert isinstance(result, ObservationIn), result
    return result


def test_a_unit_left_out_is_filled_from_the_registry(registry: SiteRegistry) -> None:
    assert passed(observation(kind="gas.lel", unit=None, value=3.0), registry).unit == "%LEL"
    assert passed(observation(unit=None), registry).unit == "ppm"


def test_a_reading_inside_its_range_travels_as_sent(registry: SiteRegistry) -> None:
    item = observation(value=100.0)  # the range is inclusive: 0..100 ppm

    assert passed(item, registry) is item
    assert passed(observation(value=0.0), registry).quality == "good"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (5000.0, "out_of_range: 5000 outside 0..100 ppm"),
        (-40.0, "out_of_range: -40 outside 0..100 ppm"),
        (100.5, "out_of_range: 100.5 outside 0..100 ppm"),
    ],
)
def test_a_reading_outside_its_range_is_kept_as_bad_with_the_reason(
    registry: SiteRegistry, value: float, reason: str
) -> None:
    result = passed(observation(value=value, unit=None), registry)

    assert isinstance(result, Checked)
    assert (result.value, result.quality, result.quality_reason) == (value, "bad", reason)
    assert result.unit == "ppm"
    # Everything else travels as sent.
    assert (result.site, result.device, result.kind, result.time) == (
        "ulsan-refinery",
        "gd-cdu1-101",
        "gas.h2s",
        NOW - timedelta(seconds=2),
    )


@pytest.mark.parametrize("quality", ["uncertain", "QUALITY_BAD"])
def test_a_quality_the_client_sent_as_not_good_is_kept_with_the_reason(
    registry: SiteRegistry, quality: str
) -> None:
    result = passed(observation(value=5000.0, quality=quality), registry)

    assert isinstance(result, Checked)
    assert result.quality == quality
    assert result.quality_reason == "out_of_range: 5000 outside 0..100 ppm"


def test_a_detection_is_not_range_checked_on_its_confidence(registry: SiteRegistry) -> None:
    item = observation(device="cam-tf-501", kind="video.fire", unit="1", value=None, confidence=0.8)

    assert passed(item, registry) is item
