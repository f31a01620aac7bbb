"""A running hub picks up an edited site file: a new detector can post without a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from services.common.auth.keys import create_key
from services.hub.bootstrap import Endpoints, Hub
from tests.builders import add_east_detector, copy_site_files, replace_in
from tests.conftest import REPO, eventually, hub_config

pytestmark = pytest.mark.integration


@pytest.fixture
async def hub_on_copied_sites(
    tmp_path: Path, nats_url: str, database_url: str
) -> AsyncIterator[tuple[Hub, Path, str]]:
    east = copy_site_files(tmp_path / "sites")
    config = hub_config(sites=[str(tmp_path / "sites" / "*.yaml")], sites_reload_s=0.1)
    hub = Hub(config, REPO, Endpoints(nats_url, database_url))
    await hub.start()
    key = await create_key(hub.pool, tenant="ulsan-refining", role="gateway")
    yield hub, east, key
    await hub.stop()


async def post_reading(hub: Hub, key: str, device: str) -> tuple[int, dict[str, Any]]:
    item = {
        "site": "ulsan-refinery-east",
        "device": device,
        "kind": "gas.h2s",
        "value": 3.0,
        "time": (datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
    }
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(hub.http_url + "/v1/observations", json=[item], headers=headers) as resp,
    ):
        return resp.status, msgspec.json.decode(await resp.read())


async def test_a_device_added_to_a_site_file_can_post_without_a_restart(
    hub_on_copied_sites: tuple[Hub, Path, str],
) -> None:
    hub, east, key = hub_on_copied_sites
    status, body = await post_reading(hub, key, "gd-hcr1-102")
    assert status == 422 and body["errors"][0]["field"] == "device"

    add_east_detector(east)

    async def accepted() -> bool:
        return (await post_reading(hub, key, "gd-hcr1-102"))[0] == 202

    await eventually(accepted, what="the new detector accepted after the reload")


async def test_an_invalid_edit_leaves_the_hub_serving_with_the_last_valid_sites(
    hub_on_copied_sites: tuple[Hub, Path, str],
) -> None:
    hub, east, key = hub_on_copied_sites
    replace_in(east, "zone: hcr-1", "zone: hcr-9")  # a zone that does not exist

    assert await hub.reload_sites() is False
    status, _ = await post_reading(hub, key, "gd-hcr1-101")
    assert status == 202
    assert hub.registry.device("ulsan-refinery-east", "gd-hcr1-101") is not None
