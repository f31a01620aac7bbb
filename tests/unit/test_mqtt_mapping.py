"""MQTT topics and JSON payloads to observations, by the configured templates (pure, no broker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from services.common.sites.registry import SiteRegistry
from services.ingest.bridges.mqtt_config import TopicTemplate
from services.ingest.bridges.mqtt_mapping import Mapped, TopicMap, Unmapped
from services.ingest.config import IngestConfig
from services.ingest.domain.checks import Checked
from services.ingest.intake import Limits

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 22, 0, 15, tzinfo=UTC)
LIMITS = Limits.of(IngestConfig())
PLANT = TopicTemplate(pattern="plant/{tenant}/{site}/{device}/{kind}")


@pytest.fixture(scope="module")
def registry() -> SiteRegistry:
    return SiteRegistry.load(
        [REPO / "sites" / "ulsan-demo.yaml", REPO / "tests" / "fixtures" / "second-refinery-site.yaml"]
    )


def mapped(
    registry: SiteRegistry, topic: str, payload: Any, *templates: TopicTemplate
) -> Mapped:
    data = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
    return TopicMap(templates or (PLANT,)).map(topic, data, registry, NOW, LIMITS)


def unmapped(registry: SiteRegistry, topic: str, payload: Any, *templates: TopicTemplate) -> Unmapped:
    with pytest.raises(Unmapped) as info:
        mapped(registry, topic, payload, *templates)
    return info.value


TOPIC = "plant/ulsan-refining/ulsan-refinery/gd-cdu1-101/gas.h2s"


def test_topic_levels_and_payload_fields_make_one_observation(registry: SiteRegistry) -> None:
    result = mapped(
        registry, TOPIC, {"value": 12.5, "unit": "ppm", "time": "2026-11-22T09:14:00+09:00", "id": "r-1"}
    )

    assert result.tenant == "ulsan-refining"
    assert not result.checked.errors
    [item] = result.checked.valid
    assert (item.site, item.device, item.kind, item.value, item.unit, item.id) == (
        "ulsan-refinery",
        "gd-cdu1-101",
        "gas.h2s",
        12.5,
        "ppm",
        "r-1",
    )
    assert item.time == datetime(2026, 11, 22, 0, 14, tzinfo=UTC)


def test_unix_times_in_seconds_and_milliseconds_are_the_same_moment(registry: SiteRegistry) -> None:
    moment = NOW - timedelta(minutes=1)
    seconds = mapped(registry, TOPIC, {"value": 1, "time": moment.timestamp()}).checked.valid[0]
    millis = mapped(registry, TOPIC, {"value": 1, "time": int(moment.timestamp() * 1000)}).checked.valid[0]

    assert seconds.time == millis.time == moment


def test_json_paths_reach_into_nested_payloads_and_fixed_values_fill_what_the_topic_lacks(
    registry: SiteRegistry,
) -> None:
    template = TopicTemplate(
        pattern="sensors/{device}/state",
        tenant="ulsan-refining",
        site="ulsan-refinery",
        kind="gas.lel",
        value="$.readings[1].v",
        time="$.meta.ts",
        quality="$.meta.q",
    )
    payload = {"readings": [{"v": 1}, {"v": 7.5}], "meta": {"ts": "2026-11-22T00:14:30Z", "q": "uncertain"}}

    [item] = mapped(registry, "sensors/gd-cdu1-101/state", payload, template).checked.valid

    assert (item.device, item.kind, item.value, item.quality, item.unit) == (
        "gd-cdu1-101",
        "gas.lel",
        7.5,
        "uncertain",
        "%LEL",  # completed from the registry, as over HTTP
    )


def test_a_bare_number_is_the_value_with_the_root_path(registry: SiteRegistry) -> None:
    template = TopicTemplate(pattern="raw/{site}/{device}/{kind}", value="$", tenant="ulsan-refining")

    [item] = mapped(registry, "raw/ulsan-refinery/gd-cdu1-101/gas.h2s", b"3.25", template).checked.valid

    assert item.value == 3.25


def test_an_array_payload_is_one_observation_per_element(registry: SiteRegistry) -> None:
    result = mapped(registry, TOPIC, [{"value": 1.0}, {"value": 2.0}, {"value": 3.0}])

    assert [i.value for i in result.checked.valid] == [1.0, 2.0, 3.0]
    assert result.count == 3


def test_the_first_matching_template_wins_and_literal_levels_must_match(registry: SiteRegistry) -> None:
    lel = TopicTemplate(pattern="plant/{tenant}/{site}/{device}/lel", kind="gas.lel")
    result = mapped(registry, "plant/ulsan-refining/ulsan-refinery/gd-cdu1-101/lel", {"value": 4}, lel, PLANT)

    assert result.template == 0
    assert result.checked.valid[0].kind == "gas.lel"
    assert mapped(registry, TOPIC, {"value": 4}, lel, PLANT).template == 1


def test_subscriptions_are_the_patterns_with_named_levels_as_wildcards() -> None:
    topic_map = TopicMap([PLANT, TopicTemplate(pattern="sensors/+/{device}/x", site="s", kind="k")])

    assert topic_map.subscriptions == ["plant/+/+/+/+", "sensors/+/+/x"]


@pytest.mark.parametrize(
    ("topic", "payload", "category", "words"),
    [
        ("other/topic", {"value": 1}, "unmatched_topic", "no topic template matches 'other/topic'"),
        ("plant/a/b", {"value": 1}, "unmatched_topic", "no topic template"),
        (TOPIC, b"{not json", "malformed", "malformed JSON"),
        (TOPIC, [], "malformed", "no observation"),
        (
            "plant/mipo-petrochem/ulsan-refinery/gd-cdu1-101/gas.h2s",
            {"value": 1},
            "unknown_site",
            "site 'ulsan-refinery' is not a site of tenant 'mipo-petrochem'",
        ),
        (
            "plant/ulsan-refining/no-such-site/gd-cdu1-101/gas.h2s",
            {"value": 1},
            "unknown_site",
            "site 'no-such-site'",
        ),
    ],
)
def test_what_cannot_be_mapped_says_why(
    registry: SiteRegistry, topic: str, payload: Any, category: str, words: str
) -> None:
    err = unmapped(registry, topic, payload)

    assert err.category == category
    assert words in str(err)


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        ({"value": "high"}, "value", "a number"),
        ({"value": 1, "unit": "ppb"}, "unit", "is in 'ppm', not 'ppb'"),
        ({"value": 1, "time": "yesterday"}, "time", "RFC 3339"),
        ({"value": 1, "quality": "great"}, "quality", "one of good"),
        ({"unit": "ppm"}, "value", "needs a value"),
    ],
)
def test_an_item_the_checks_refuse_names_its_field(
    registry: SiteRegistry, payload: dict[str, Any], field: str, words: str
) -> None:
    result = mapped(registry, TOPIC, payload)

    assert not result.checked.valid
    [error] = result.checked.errors
    assert error.field == field
    assert words in error.detail


def test_an_unknown_device_or_kind_is_refused_as_over_http(registry: SiteRegistry) -> None:
    device = mapped(registry, "plant/ulsan-refining/ulsan-refinery/gd-nope/gas.h2s", {"value": 1})
    kind = mapped(registry, "plant/ulsan-refining/ulsan-refinery/gd-cdu1-101/gas.nh3", {"value": 1})

    assert [e.field for e in device.checked.errors] == ["device"]
    assert [e.field for e in kind.checked.errors] == ["kind"]


def test_a_value_outside_the_registered_range_is_kept_with_quality_bad(registry: SiteRegistry) -> None:
    [item] = mapped(registry, TOPIC, {"value": 5000}).checked.valid

    assert item.quality == "bad"
    assert isinstance(item, Checked) and (item.quality_reason or "").startswith("out_of_range")


def test_a_template_without_a_tenant_takes_the_sites_owner(registry: SiteRegistry) -> None:
    template = TopicTemplate(pattern="t/{site}/{device}/{kind}")

    result = mapped(registry, "t/mipo-aromatics/gd-btx-101/gas.lel", {"value": 1}, template)

    assert result.tenant == "mipo-petrochem"
