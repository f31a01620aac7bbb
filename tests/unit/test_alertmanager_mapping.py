"""Alertmanager's webhook payload (version 4, fixtures as Prometheus documents it) mapped to
observations: one point per alert, repeats the same observation, a resolved alert its own."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from services.common.sites.registry import SiteRegistry
from services.ingest.alertmanager_config import AlertmanagerConfig
from services.ingest.domain.alertmanager import AlertProblem, Mapped, decode, observations
from services.ingest.intake import Limits
from tests.conftest import DEMO_SITES, REPO

FIXTURES = REPO / "tests" / "fixtures" / "alertmanager"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
LIMITS = Limits(max_future=timedelta(minutes=5), max_age=timedelta(days=30))
REGISTRY = SiteRegistry.load([DEMO_SITES])


def payload(name: str, **alert: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    body["alerts"][0].update(alert)
    return body


def mapped(body: dict[str, Any], mapping: AlertmanagerConfig | None = None) -> Mapped:
    webhook = decode(msgspec.json.encode(body))
    config = mapping or AlertmanagerConfig()
    return observations(webhook, config, REGISTRY, tenant="ulsan-refining", now=NOW, limits=LIMITS)


def test_a_firing_alert_is_a_reading_of_1_of_its_own_device_at_its_labels_site_and_zone() -> None:
    (obs,) = mapped(payload("firing.json")).items

    assert (obs.site, obs.device, obs.kind, obs.value) == (
        "ulsan-refinery",
        "am-3f1a4c2b9d8e7f60",
        "infra.alert",
        1.0,
    )
    assert obs.time == datetime(2026, 12, 1, 8, 15, 30, 123000, tzinfo=UTC)  # startsAt
    assert obs.attributes["zone"] == "sru"
    assert obs.attributes["alertname"] == "ExporterDown"
    assert obs.attributes["summary"] == "SRU gas analyser exporter is down"
    assert obs.attributes["instance"] == "ga-sru-01:9100"


def test_repeated_notifications_are_one_observation_and_the_resolution_another() -> None:
    first = mapped(payload("firing.json")).items[0]
    # Alertmanager's repeat_interval resends the alert as it is; a later group may add labels
    # the alert does not carry (groupKey, commonLabels): the alert's identity is its fingerprint.
    repeat = payload("firing.json")
    repeat["groupKey"] = "{}:{}"
    again = mapped(repeat).items[0]
    resolved = mapped(payload("resolved.json")).items[0]

    assert (again.id, again.time) == (first.id, first.time)
    assert resolved.value == 0.0 and resolved.device == first.device
    assert resolved.time == datetime(2026, 12, 1, 8, 42, 0, 456000, tzinfo=UTC)  # endsAt
    assert resolved.id != first.id
    # The same alert firing again later (a new startsAt) is a new activation.
    later = mapped(payload("firing.json", startsAt="2026-12-01T08:50:00Z")).items[0]
    assert later.id not in (first.id, resolved.id)


def test_labels_map_to_sites_zones_and_kinds_by_configuration() -> None:
    config = AlertmanagerConfig(
        site_label="plant",
        sites={"refinery": "ulsan-refinery"},
        zones={"sulphur": "sru"},
        kinds={"ExporterDown": "infra.exporter"},
    )
    body = payload("firing.json")
    labels = body["alerts"][0]["labels"]
    del labels["site"]
    labels.update(plant="refinery", zone="sulphur")

    (obs,) = mapped(body, config).items

    assert (obs.site, obs.kind, obs.attributes["zone"]) == ("ulsan-refinery", "infra.exporter", "sru")


@pytest.mark.parametrize(
    ("labels", "field", "words"),
    [
        ({"site": "no-such-site"}, "alerts[0].labels.site", "not a site of this tenant"),
        (
            {"site": "mipo-aromatics"},
            "alerts[0].labels.site",
            "not a site of this tenant",
        ),  # another tenant's
    ],
)
def test_a_label_naming_no_site_of_the_tenant_is_refused_naming_the_label(
    labels: dict[str, str], field: str, words: str
) -> None:
    body = payload("firing.json")
    body["alerts"][0]["labels"].update(labels)

    result = mapped(body)

    assert result.items == []
    (error,) = result.unknown_sites
    assert error.field == field and words in error.detail


def test_an_unknown_zone_a_missing_site_label_or_a_resolution_without_end_is_refused_naming_it() -> None:
    unknown_zone = payload("firing.json")
    unknown_zone["alerts"][0]["labels"]["zone"] = "nowhere"
    no_site = payload("firing.json")
    del no_site["alerts"][0]["labels"]["site"]
    no_end = payload("resolved.json", endsAt="0001-01-01T00:00:00Z")

    assert [e.field for e in mapped(unknown_zone).errors] == ["alerts[0].labels.zone"]
    assert [e.field for e in mapped(no_site).errors] == ["alerts[0].labels.site"]
    assert [e.field for e in mapped(no_end).errors] == ["alerts[0].endsAt"]
    # A fixed site serves alerts without the label.
    assert mapped(no_site, AlertmanagerConfig(site="ulsan-refinery")).items


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, ""),
        (b"[1, 2]", 422, ""),
        (msgspec.json.encode({**payload("firing.json"), "version": "3"}), 422, "version"),
        (msgspec.json.encode({**payload("firing.json"), "version": 4}), 422, "version"),
        (msgspec.json.encode({"version": "4", "status": "firing"}), 422, "alerts"),
        (msgspec.json.encode(payload("firing.json", fingerprint="xyz")), 422, "alerts[0].fingerprint"),
        (msgspec.json.encode(payload("firing.json", status="pending")), 422, "alerts[0].status"),
        (
            msgspec.json.encode(payload("firing.json", startsAt="2026-12-01T08:15:30")),
            422,
            "alerts[0].startsAt",
        ),
    ],
)
def test_a_body_that_is_not_a_version_4_notification_is_refused_naming_the_field(
    body: bytes, status: int, field: str
) -> None:
    with pytest.raises(AlertProblem) as info:
        decode(body)

    assert (info.value.status, info.value.field) == (status, field)


def test_only_infrastructure_kinds_are_configurable() -> None:
    with pytest.raises(msgspec.ValidationError, match="infrastructure kind"):
        msgspec.convert({"kinds": {"ExporterDown": "gas.h2s"}}, AlertmanagerConfig)
