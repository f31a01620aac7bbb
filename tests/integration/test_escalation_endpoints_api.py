"""The endpoints API through the running hub: create (the secret shown once), read, change,
rotate, delete; 422 naming the field; roles, tenants and sites; every change audited."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from services.common.auth.keys import create_key
from tests.conftest import RunningHub
from tests.integration.escalation_hub import admin_key, call, create_endpoint, escalation_hub
from tests.openapi import assert_matches

WHSEC = "whsec_" + base64.b64encode(bytes(range(32))).decode()


@pytest.fixture
async def hub(nats_url: str, database_url: str) -> AsyncIterator[RunningHub]:
    async with escalation_hub(nats_url, database_url) as running:
        yield running


async def test_an_admin_creates_reads_changes_rotates_and_deletes_an_endpoint(hub: RunningHub) -> None:
    key = await admin_key(hub)
    created = await create_endpoint(
        hub,
        key,
        url="https://control-room.example.org/hooks",
        name="Ulsan control room",
        language="ko",
        sites=["ulsan-refinery"],
        minSeverity="Severe",
        types=["gas_release", "fire"],
        headers={"X-Receiver-Key": "abc"},
    )
    assert_matches("EndpointWithSecret", created)
    assert created["secret"].startswith("whsec_") and len(base64.b64decode(created["secret"][6:])) == 32
    assert created["format"] == "json" and created["language"] == "ko" and created["enabled"] is True
    assert created["headers"] == ["X-Receiver-Key"]  # names only, never the values
    path = f"/v1/endpoints/{created['id']}"

    # The secret is shown once: never in a read.
    status, one = await call(hub, "GET", path, key)
    assert status == 200 and "secret" not in one
    assert_matches("Endpoint", one)
    assert {k: v for k, v in created.items() if k != "secret"} == one
    status, listed = await call(hub, "GET", "/v1/endpoints", key)
    assert status == 200 and [e["id"] for e in listed["items"]] == [created["id"]]
    assert "secret" not in listed["items"][0]

    status, changed = await call(hub, "PATCH", path, key, {"minSeverity": "Extreme", "types": None})
    assert status == 200, changed
    assert changed["minSeverity"] == "Extreme" and changed["types"] is None
    assert changed["url"] == created["url"] and changed["sites"] == ["ulsan-refinery"]

    status, rotated = await call(hub, "POST", path + "/rotate-secret", key, {"overlapS": 600})
    assert status == 200, rotated
    assert_matches("EndpointWithSecret", rotated)
    assert rotated["secret"] != created["secret"] and rotated["previousSecretUntil"] is not None
    status, problem = await call(hub, "POST", path + "/rotate-secret", key, {"overlapS": -1})
    assert status == 422 and problem["errors"][0]["field"] == "overlapS"

    status, _ = await call(hub, "DELETE", path, key)
    assert status == 204
    status, _ = await call(hub, "GET", path, key)
    assert status == 404
    status, listed = await call(hub, "GET", "/v1/endpoints", key)
    assert listed["items"] == []

    audited = await hub.hub.pool.fetch(
        "SELECT action, actor FROM audit_log WHERE target = $1 ORDER BY id", created["id"]
    )
    assert [r["action"] for r in audited] == [
        "endpoint.created",
        "endpoint.updated",
        "endpoint.secret_rotated",
        "endpoint.deleted",
    ]
    # The secrets are nowhere in the audit trail.
    details = await hub.hub.pool.fetch("SELECT detail::text AS d FROM audit_log")
    assert not any(created["secret"] in r["d"] or rotated["secret"] in r["d"] for r in details)


async def test_a_given_secret_in_whsec_form_is_kept(hub: RunningHub) -> None:
    key = await admin_key(hub)
    created = await create_endpoint(hub, key, url="https://example.org/in", secret=WHSEC)
    assert created["secret"] == WHSEC


REFUSED: list[tuple[dict[str, object], str, str]] = [
    ({"url": "ftp://example.org/x"}, "url", "http or https"),
    ({"url": "https://user:pw@example.org/"}, "url", "credentials"),
    ({"url": "https://example.org/", "format": "xml"}, "format", "xml"),
    ({"url": "https://example.org/", "language": "fr"}, "language", "fr"),
    ({"url": "https://example.org/", "secret": "plain-text"}, "secret", "whsec_"),
    ({"url": "https://example.org/", "secret": "whsec_c2hvcnQ="}, "secret", "24 to 64 bytes"),
    ({"url": "https://example.org/", "minSeverity": "Huge"}, "minSeverity", "Huge"),
    ({"url": "https://example.org/", "types": ["earthquake"]}, "types", "earthquake"),
    ({"url": "https://example.org/", "sites": ["mipo-aromatics"]}, "sites", "mipo-aromatics"),
    ({"url": "https://example.org/", "sites": []}, "sites", "empty"),
    ({"url": "https://example.org/", "headers": {"webhook-id": "x"}}, "headers.webhook-id", "delivery"),
    ({"url": "https://example.org/", "colour": "red"}, "colour", "unknown"),
    ({"name": "no url"}, "url", "url"),
]


async def test_a_field_that_cannot_be_is_422_naming_it(hub: RunningHub) -> None:
    key = await admin_key(hub)
    for body, field, words in REFUSED:
        status, problem = await call(hub, "POST", "/v1/endpoints", key, body)
        assert status == 422, (body, problem)
        assert problem["errors"][0]["field"] == field, (body, problem)
        assert words in problem["detail"], (body, problem)
    assert await hub.hub.pool.fetchval("SELECT count(*) FROM escalation_endpoints") == 0
    created = await create_endpoint(hub, key, url="https://example.org/in")
    status, problem = await call(hub, "PATCH", f"/v1/endpoints/{created['id']}", key, {"language": "de"})
    assert status == 422 and problem["errors"][0]["field"] == "language"
    status, problem = await call(hub, "PATCH", f"/v1/endpoints/{created['id']}", key, {"secret": WHSEC})
    assert status == 422 and problem["errors"][0]["field"] == "secret"  # rotated, never patched


async def test_the_hub_itself_is_refused_as_an_endpoint(hub: RunningHub) -> None:
    key = await admin_key(hub)
    port = hub.url.rsplit(":", 1)[1]
    for url in (hub.url + "/v1/observations", f"http://localhost:{port}/", f"http://[::1]:{port}/x"):
        status, problem = await call(hub, "POST", "/v1/endpoints", key, {"url": url})
        assert status == 422, (url, problem)
        assert problem["errors"][0]["field"] == "url" and "hub itself" in problem["detail"]
    created = await create_endpoint(hub, key, url="https://example.org/in")
    status, problem = await call(hub, "PATCH", f"/v1/endpoints/{created['id']}", key, {"url": hub.url + "/"})
    assert status == 422 and problem["errors"][0]["field"] == "url"


async def test_only_admins_of_the_tenant_and_its_sites_manage_endpoints(hub: RunningHub) -> None:
    pool = hub.hub.pool
    key = await admin_key(hub)
    created = await create_endpoint(hub, key, url="https://example.org/in", sites=["ulsan-refinery"])
    path = f"/v1/endpoints/{created['id']}"
    for role in ("viewer", "responder", "operator", "gateway"):
        other = await create_key(pool, tenant="ulsan-refining", role=role)
        for method, route in (("GET", "/v1/endpoints"), ("GET", path), ("DELETE", path)):
            status, _ = await call(hub, method, route, other)
            assert status == 403, (role, method, route)
    # Another tenant's admin: it does not exist.
    mipo = await admin_key(hub, tenant="mipo-petrochem")
    for method in ("GET", "DELETE"):
        status, _ = await call(hub, method, path, mipo)
        assert status == 404
    status, listed = await call(hub, "GET", "/v1/endpoints", mipo)
    assert listed["items"] == []
    # An admin limited to another site neither sees it nor makes one for every site.
    east = await admin_key(hub, sites=["ulsan-refinery-east"])
    status, _ = await call(hub, "GET", path, east)
    assert status == 404
    status, problem = await call(hub, "POST", "/v1/endpoints", east, {"url": "https://example.org/e"})
    assert status == 422 and problem["errors"][0]["field"] == "sites"
    status, problem = await call(
        hub, "POST", "/v1/endpoints", east, {"url": "https://example.org/e", "sites": ["ulsan-refinery"]}
    )
    assert status == 422 and problem["errors"][0]["field"] == "sites"
    mine = await create_endpoint(hub, east, url="https://example.org/e", sites=["ulsan-refinery-east"])
    status, listed = await call(hub, "GET", "/v1/endpoints", east)
    assert [e["id"] for e in listed["items"]] == [mine["id"]]
    status, problem = await call(hub, "GET", "/v1/endpoints/not-an-id", key)
    assert status == 404
