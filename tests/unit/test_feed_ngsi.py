"""Shared incidents as smart-data-models Alert entities: valid against the Alert JSON Schema (kept
in tests/fixtures/smart-data-models with its source and licence), at every level that shares
incidents, and with validTo once the incident is resolved."""

from __future__ import annotations

import functools
import json
from typing import Any

import msgspec
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from services.feed.domain.ngsi import CONTEXT, alert_entity, key_values
from services.feed.domain.policy import SharingPolicy
from services.feed.domain.projection import project_incident
from tests.conftest import REPO
from tests.unit.feed_facts import PLACES, SECRETS, incident

SCHEMAS = REPO / "tests" / "fixtures" / "smart-data-models"


@functools.cache
def validator() -> Draft202012Validator:
    resources = []
    for name in ("Alert-schema.json", "alert-schema.json", "common-schema.json", "weather-schema.json"):
        schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
        resources.append((schema["$id"], Resource.from_contents(schema)))
    registry: Registry[Any] = Registry().with_resources(resources)
    alert = json.loads((SCHEMAS / "Alert-schema.json").read_text(encoding="utf-8"))
    return Draft202012Validator(alert, registry=registry, format_checker=FormatChecker())


def entity_of(level: str, **changes: object) -> dict[str, Any]:
    policy = msgspec.convert({"level": level}, SharingPolicy)
    facts = incident(**changes)
    shared = project_incident(facts, policy, PLACES)
    assert shared is not None
    entity = alert_entity(shared, tenant=facts.tenant, site=facts.site, issued="2026-11-22T00:21:40Z")
    assert entity is not None
    return entity


@pytest.mark.parametrize("level", ["redacted", "full"])
@pytest.mark.parametrize(
    "kind", ["gas_release", "fire", "person_down", "intrusion", "alarm_flood", "comm_loss"]
)
def test_every_shared_incident_is_a_valid_alert(level: str, kind: str) -> None:
    entity = entity_of(level, type=kind)

    errors = sorted(validator().iter_errors(key_values(entity)), key=lambda e: e.json_path)
    assert not errors, [f"{e.json_path}: {e.message}" for e in errors]
    assert entity["id"] == "urn:ngsi-ld:Alert:01KAMR2R1FQ4T5D3Y6Z8W9X0AB"
    assert entity["type"] == "Alert"
    assert entity["@context"] == CONTEXT
    assert entity["location"]["type"] == "GeoProperty"


def test_the_schema_check_refuses_what_is_not_an_alert() -> None:
    entity = key_values(entity_of("redacted"))

    assert list(validator().iter_errors({**entity, "category": "industry"}))
    assert list(validator().iter_errors({**entity, "severity": "Extreme"}))
    assert list(validator().iter_errors({k: v for k, v in entity.items() if k != "dateIssued"}))


def test_a_redacted_alert_says_what_happened_in_codes_and_nothing_of_the_plant() -> None:
    entity = entity_of("redacted")

    assert entity["category"]["value"] == "environment"
    assert entity["subCategory"]["value"] == "airPollution"
    assert entity["severity"]["value"] == "critical"
    assert entity["description"]["value"] == "gas_release · Extreme · acknowledged · zone fcc-2"
    assert entity["dateIssued"]["value"] == {"@type": "DateTime", "@value": "2026-11-22T00:15:03Z"}
    assert "validTo" not in entity
    assert not [secret for secret in SECRETS if secret in json.dumps(entity)]


def test_resolution_sets_valid_to() -> None:
    entity = entity_of("redacted", status="resolved", change="resolved")

    assert entity["validTo"]["value"]["@value"] == "2026-11-22T00:21:40Z"
    assert entity["validFrom"]["value"]["@value"] == "2026-11-22T00:15:03Z"


def test_without_its_times_shared_the_alert_is_dated_by_its_event() -> None:
    policy = msgspec.convert({"level": "redacted", "fields": {"incident": ["type"]}}, SharingPolicy)
    shared = project_incident(incident(), policy, PLACES)
    assert shared is not None

    entity = alert_entity(
        shared, tenant="ulsan-refining", site="ulsan-refinery", issued="2026-11-22T00:21:40Z"
    )

    assert entity is not None
    assert entity["dateIssued"]["value"]["@value"] == "2026-11-22T00:21:40Z"
    assert set(entity) == {
        "id",
        "type",
        "alertSource",
        "category",
        "subCategory",
        "dateIssued",
        "description",
        "data",
        "@context",
    }
    assert not list(validator().iter_errors(key_values(entity)))
