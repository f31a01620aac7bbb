"""`safetyhub up` with authentication on its embedded NATS: the hub serves and stores as before, a
city user added while it runs is taken in without disturbing it, and its secret stays out of the
logs."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import nats
import nats.js.errors
import pytest

from tests.conftest import REPO, eventually
from tests.e2e.test_hub_process import CLI, HubProcess, _post, _readings, _stored_ids
from tests.integration.test_feed_credentials import _login

pytestmark = pytest.mark.e2e


def _feed(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "feed", "credentials", *args, "--data-dir", str(data_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_up_with_auth_serves_stores_and_takes_a_city_user_in_live(workdir: Path) -> None:
    hub = HubProcess(workdir)
    info = await hub.ready()
    gateway = hub.key("ulsan-refining", "gateway")
    viewer = hub.key("ulsan-refining", "viewer")
    address = urlsplit(info["nats_url"]).netloc.rsplit("@", 1)[1]
    assert await _login(address, None, None) == "-ERR 'Authorization Violation'"

    status, _ = await _post(info["http_url"], gateway, _readings("a", 10))
    assert status == 202

    created = await asyncio.to_thread(_feed, hub.data_dir, "create", "--name", "city-ulsan")
    assert created.returncode == 0, created.stderr
    assert "in force now" in created.stdout
    secret = next(
        line.split()[1] for line in created.stdout.splitlines() if line.strip().startswith("password")
    )
    assert await _login(address, "city-ulsan", secret) == "PONG"

    # The reload left the hub's connections alone: what is posted after it is stored too.
    status, _ = await _post(info["http_url"], gateway, _readings("b", 10))
    assert status == 202

    async def all_stored() -> bool:
        return len(await _stored_ids(info["http_url"], viewer)) == 20

    await eventually(all_stored, timeout=30, what="the readings posted before and after the reload")
    assert hub.stop() == 0

    hub_secret = (hub.data_dir / "nats" / "hub.secret").read_text().strip()
    assert hub_secret in info["nats_url"]  # runtime.json (0600) hands it to the hub's tools
    log = (workdir / "hub.log").read_text()
    assert "nats://hub:***@" in log and hub_secret not in log and secret not in log


async def test_a_city_user_created_while_no_hub_runs_gets_its_durable_when_the_hub_starts(
    workdir: Path,
) -> None:
    data_dir = workdir / "data"
    created = await asyncio.to_thread(_feed, data_dir, "create", "--name", "city-offline")
    assert created.returncode == 0, created.stderr

    hub = HubProcess(workdir)
    info = await hub.ready()
    nc = await nats.connect(info["nats_url"])
    try:
        js = nc.jetstream()

        async def durable_made() -> bool:
            try:
                consumer = await js.consumer_info("FEED", "city-offline")
            except nats.js.errors.NotFoundError:
                return False
            return consumer.config.durable_name == "city-offline" and consumer.config.deliver_subject is None

        await eventually(durable_made, timeout=30, what="the city's FEED durable made by the starting hub")
    finally:
        await nc.close()
    assert hub.stop() == 0
