"""GET /v1/devices/{device}/latest: a device's newest stored reading of each kind, for whom may read it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from services.common.auth.keys import create_key
from services.hub.bootstrap import Endpoints, Hub
from tests.builders import copy_site_files, replace_in
from tests.conftest import REPO, eventually, hub_config
from tests.openapi import assert_matches

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@dataclass
class LatestHub:
    hub: Hub
    keys: dict[str, str]
    session: aiohttp.ClientSession

    async def post(self, items: list[dict[str, Any]]) -> None:
        headers = {"Authorization": f"Bearer {self.keys['gateway']}"}
        async with self.session.post(
            self.hub.http_url + "/v1/observations", json=items, headers=headers
        ) as resp:
            assert resp.status == 202, await resp.text()
            assert (await resp.json())["rejected"] == []

    async def latest(
        self, device: str, key: str = "viewer", **params: str
    ) -> tuple[int, str, dict[str, Any]]:
        url = f"{self.hub.http_url}/v1/devices/{device}/latest"
        headers = {"Authorization": f"Bearer {self.keys[key]}"}
        async with self.session.get(url, params=params, headers=headers) as resp:
            return resp.status, resp.content_type, msgspec.json.decode(await resp.read())

    async def stored(self, count: int) -> None:
        async def enough() -> bool:
            stored: int = await self.hub.pool.fetchval("SELECT count(*) FROM observations")
            return stored >= count

        await eventually(enough, what=f"{count} stored observations")


@pytest.fixture
async def latest_hub(tmp_path: Path, nats_url: str, database_url: str) -> AsyncIterator[LatestHub]:
    # The east site's detector takes the id of one at the refinery: ids are unique per site only.
    east = copy_site_files(tmp_path / "sites")
    replace_in(east, "id: gd-hcr1-101", "id: gd-cdu1-101")
    config = hub_config(sites=[str(tmp_path / "sites" / "*.yaml")], sites_reload_s=0)
    hub = Hub(config, REPO, Endpoints(nats_url, database_url))
    await hub.start()
    keys = {
        "gateway": await create_key(hub.pool, tenant="ulsan-refining", role="gateway"),
        "viewer": await create_key(hub.pool, tenant="ulsan-refining", role="viewer"),
        "admin": await create_key(hub.pool, tenant="ulsan-refining", role="admin"),
        "refinery_viewer": await create_key(
            hub.pool, tenant="ulsan-refining", role="viewer", sites=["ulsan-refinery"]
        ),
        "east_viewer": await create_key(
            hub.pool, tenant="ulsan-refining", role="viewer", sites=["ulsan-refinery-east"]
        ),
        "mipo_viewer": await create_key(hub.pool, tenant="mipo-petrochem", role="viewer"),
    }
    async with aiohttp.ClientSession() as session:
        yield LatestHub(hub, keys, session)
    await hub.stop()


def reading(
    kind: str, minutes: int, value: float, *, device: str = "gd-cdu1-102", **more: Any
) -> dict[str, Any]:
    unit = {"gas.lel": "%LEL", "gas.h2s": "ppm"}[kind]
    return {
        "site": "ulsan-refinery",
        "device": device,
        "kind": kind,
        "time": (BASE + timedelta(minutes=minutes)).isoformat(),
        "value": value,
        "unit": unit,
        **more,
    }


async def test_the_newest_reading_of_each_kind_is_returned(latest_hub: LatestHub) -> None:
    # Posted out of time order: the newest by time wins, not the last stored.
    await latest_hub.post(
        [
            reading("gas.h2s", 5, 7.0),
            reading("gas.lel", 1, 2.0),
            reading("gas.lel", 3, 4.0),
            reading("gas.h2s", 1, 1.0),
            reading("gas.h2s", 2, 2.0),
        ]
    )
    await latest_hub.post([reading("gas.h2s", 4, 5.0), reading("gas.lel", 2, 3.0)])
    await latest_hub.stored(7)

    status, content_type, body = await latest_hub.latest("gd-cdu1-102")

    assert status == 200 and content_type == "application/json"
    assert_matches("LatestObservations", body)
    assert body["site"] == "ulsan-refinery" and body["device"] == "gd-cdu1-102"
    # In the site file's order of kinds: gas.lel, then gas.h2s.
    assert [(i["kind"], i["value"]) for i in body["items"]] == [("gas.lel", 4.0), ("gas.h2s", 7.0)]
    newest = body["items"][1]
    assert newest["time"] == (BASE + timedelta(minutes=5)).isoformat()
    assert newest["unit"] == "ppm" and newest["tenant"] == "ulsan-refining"


async def test_items_have_the_shape_of_the_history(latest_hub: LatestHub) -> None:
    await latest_hub.post([reading("gas.h2s", 1, 1.5, id="the-one")])
    await latest_hub.stored(1)
    headers = {"Authorization": f"Bearer {latest_hub.keys['viewer']}"}
    url = latest_hub.hub.http_url + "/v1/observations"
    async with latest_hub.session.get(url, params={"device": "gd-cdu1-102"}, headers=headers) as resp:
        history = await resp.json()

    _, _, body = await latest_hub.latest("gd-cdu1-102")

    assert body["items"] == history["items"]


async def test_a_device_without_readings_has_no_items(latest_hub: LatestHub) -> None:
    status, _, body = await latest_hub.latest("gd-cdu1-102", key="admin")
    assert status == 200
    assert body == {"site": "ulsan-refinery", "device": "gd-cdu1-102", "items": []}


async def test_another_tenants_device_is_not_found_like_an_unknown_one(latest_hub: LatestHub) -> None:
    await latest_hub.post([reading("gas.h2s", 1, 1.5)])
    await latest_hub.stored(1)

    for params in ({}, {"site": "ulsan-refinery"}):
        theirs = await latest_hub.latest("gd-cdu1-102", key="mipo_viewer", **params)
        unknown = await latest_hub.latest("gd-nope", key="mipo_viewer", **params)
        assert theirs[:2] == unknown[:2] == (404, PROBLEM)
        # The same answer but for the id asked for: nothing tells that the device exists.
        as_text = msgspec.json.encode(theirs[2]).decode().replace("gd-cdu1-102", "gd-nope")
        assert msgspec.json.decode(as_text) == unknown[2]
    status, _, body = await latest_hub.latest("gd-cdu1-102", key="mipo_viewer")
    assert body["detail"] == "no device 'gd-cdu1-102' that this key may read"
    assert body["type"] == "https://safetyhub.dev/problems/not-found"
    status, _, body = await latest_hub.latest("gd-cdu1-102", key="mipo_viewer", site="ulsan-refinery")
    assert body["detail"] == "no device 'gd-cdu1-102' at site 'ulsan-refinery' that this key may read"
    status, _, _ = await latest_hub.latest("gd-cdu1-102", site="no-such-site")
    assert status == 404


async def test_a_device_outside_the_keys_sites_is_not_found(latest_hub: LatestHub) -> None:
    status, _, body = await latest_hub.latest("gd-cdu1-102", key="east_viewer")
    assert status == 404
    assert body["detail"] == "no device 'gd-cdu1-102' that this key may read"
    status, _, _ = await latest_hub.latest("gd-cdu1-102", key="east_viewer", site="ulsan-refinery")
    assert status == 404


async def test_a_device_id_at_two_sites_needs_the_site(latest_hub: LatestHub) -> None:
    status, content_type, body = await latest_hub.latest("gd-cdu1-101")
    assert (status, content_type) == (400, PROBLEM)
    sites = "ulsan-refinery, ulsan-refinery-east"
    assert body["errors"] == [
        {"field": "site", "detail": f"device 'gd-cdu1-101' is at several sites ({sites}); name one"}
    ]

    at_east = await latest_hub.latest("gd-cdu1-101", site="ulsan-refinery-east")
    assert at_east[0] == 200 and at_east[2]["site"] == "ulsan-refinery-east"
    # A key that reads one of the two sites has nothing to choose between.
    only_one = await latest_hub.latest("gd-cdu1-101", key="refinery_viewer")
    assert only_one[0] == 200 and only_one[2]["site"] == "ulsan-refinery"


async def test_a_gateway_key_may_not_read(latest_hub: LatestHub) -> None:
    status, content_type, body = await latest_hub.latest("gd-cdu1-102", key="gateway")
    assert (status, content_type) == (403, PROBLEM)
    assert body["detail"] == "role 'gateway' may not read observations"


async def test_unknown_parameters_are_refused(latest_hub: LatestHub) -> None:
    status, _, body = await latest_hub.latest("gd-cdu1-102", kind="gas.h2s")
    assert status == 400
    assert body["errors"][0]["field"] == "kind"


async def test_without_a_key_it_is_401(latest_hub: LatestHub) -> None:
    url = latest_hub.hub.http_url + "/v1/devices/gd-cdu1-102/latest"
    async with latest_hub.session.get(url) as resp:
        assert resp.status == 401
