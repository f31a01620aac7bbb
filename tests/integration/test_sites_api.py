"""GET /v1/sites: a key's own sites, zones and devices, with what each device measures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from services.common.auth.keys import create_key
from services.hub.bootstrap import Endpoints, Hub
from tests.builders import add_east_detector, copy_site_files
from tests.conftest import REPO, RunningHub, hub_config
from tests.openapi import assert_matches

pytestmark = pytest.mark.integration


async def sites(hub: RunningHub, key: str, **params: str) -> tuple[int, str, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"}
    async with hub.session.get(hub.url + "/v1/sites", params=params, headers=headers) as resp:
        return resp.status, resp.content_type, msgspec.json.decode(await resp.read())


async def test_a_viewer_sees_its_tenants_sites_with_zones_and_devices(running_hub: RunningHub) -> None:
    status, content_type, body = await sites(running_hub, running_hub.keys["viewer"])

    assert status == 200 and content_type == "application/json"
    assert_matches("SiteList", body)
    assert [s["id"] for s in body["items"]] == ["ulsan-refinery", "ulsan-refinery-east"]
    refinery = body["items"][0]
    assert refinery["tenant"] == "ulsan-refining" and refinery["timezone"] == "Asia/Seoul"
    cdu = next(z for z in refinery["zones"] if z["id"] == "cdu-1")
    assert cdu["hazard"] == "flammable" and len(cdu["polygon"]) >= 3
    detector = next(d for d in refinery["devices"] if d["id"] == "gd-cdu1-101")
    assert detector["zone"] == "cdu-1" and detector["type"] == "gas_detector"
    assert detector["position"] == {"lat": 35.47746, "lon": 129.35037}
    assert detector["measures"] == [
        {"kind": "gas.lel", "unit": "%LEL", "range": [0.0, 100.0]},
        {"kind": "gas.h2s", "unit": "ppm", "range": [0.0, 100.0]},
    ]


async def test_other_tenants_sites_never_appear(running_hub: RunningHub) -> None:
    _, _, mipo = await sites(running_hub, running_hub.keys["mipo_viewer"])
    _, _, refining = await sites(running_hub, running_hub.keys["viewer"])

    assert [s["id"] for s in mipo["items"]] == ["mipo-aromatics"]
    assert {s["tenant"] for s in refining["items"]} == {"ulsan-refining"}
    # Not a device of the other tenant either.
    mipo_devices = {d["id"] for s in mipo["items"] for d in s["devices"]}
    assert "gd-cdu1-101" not in mipo_devices


async def test_a_key_limited_to_sites_sees_only_those(running_hub: RunningHub) -> None:
    _, _, body = await sites(running_hub, running_hub.keys["gateway_cdu_only"])
    assert [s["id"] for s in body["items"]] == ["ulsan-refinery"]


async def test_every_role_may_read_it(running_hub: RunningHub) -> None:
    for role in ("gateway", "viewer", "responder", "operator", "admin", "platform"):
        key = await create_key(running_hub.hub.pool, tenant="ulsan-refining", role=role)
        status, _, body = await sites(running_hub, key)
        assert status == 200, role
        assert len(body["items"]) == 2, role


async def test_a_tenant_without_sites_gets_an_empty_list(running_hub: RunningHub) -> None:
    key = await create_key(running_hub.hub.pool, tenant="nobody-here", role="viewer")
    assert await sites(running_hub, key) == (200, "application/json", {"items": []})


async def test_it_needs_a_key_and_takes_no_parameters(running_hub: RunningHub) -> None:
    async with running_hub.session.get(running_hub.url + "/v1/sites") as resp:
        assert resp.status == 401
    status, content_type, body = await sites(running_hub, running_hub.keys["viewer"], site="ulsan-refinery")
    assert (status, content_type) == (400, "application/problem+json")
    assert body["errors"] == [{"field": "site", "detail": "unknown parameter"}]


async def test_a_reloaded_site_file_shows_at_once(tmp_path: Path, nats_url: str, database_url: str) -> None:
    east = copy_site_files(tmp_path / "sites")
    config = hub_config(sites=[str(tmp_path / "sites" / "*.yaml")], sites_reload_s=60)
    hub = Hub(config, REPO, Endpoints(nats_url, database_url))
    await hub.start()
    try:
        key = await create_key(
            hub.pool, tenant="ulsan-refining", role="gateway", sites=["ulsan-refinery-east"]
        )
        async with aiohttp.ClientSession() as session:
            running = RunningHub(hub, hub.http_url, {}, session)
            _, _, before = await sites(running, key)
            add_east_detector(east)
            assert await hub.reload_sites()
            _, _, after = await sites(running, key)
    finally:
        await hub.stop()
    assert [d["id"] for d in before["items"][0]["devices"]] == ["gd-hcr1-101"]
    assert sorted(d["id"] for d in after["items"][0]["devices"]) == ["gd-hcr1-101", "gd-hcr1-102"]
