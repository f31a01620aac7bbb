"""`safetyhub up --workers 2` keeps serving when its embedded servers are killed under it.

The workers were given the servers' URLs at start, in their environment: a restart on the same
ports is what lets them carry on without being restarted themselves.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.conftest import eventually
from tests.e2e.conftest import processes_under
from tests.e2e.test_hub_process import HubProcess, _post, _readings, _stored_ids

pytestmark = pytest.mark.e2e



def _server_pid(hub: HubProcess, name: str) -> int:
    if name == "nats-server":
        return int((hub.data_dir / "nats" / "nats-server.pid").read_text().strip())
    return int((hub.data_dir / "pg" / "data" / "postmaster.pid").read_text().splitlines()[0])


async def test_workers_carry_on_after_both_servers_are_killed(workdir: Path) -> None:
    hub = HubProcess(workdir, "--workers", "2")
    info = await hub.ready()
    gateway = hub.key("ulsan-refining", "gateway")
    viewer = hub.key("ulsan-refining", "viewer")
    status, _ = await _post(info["http_url"], gateway, _readings("before", 50))
    assert status == 202

    killed = []
    for name in ("nats-server", "postgres"):
        pid = _server_pid(hub, name)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    async def both_restarted() -> bool:
        text = (workdir / "hub.log").read_text(errors="replace")
        return text.count('"event": "embedded_server_restarted"') >= 2

    await eventually(both_restarted, timeout=30, what="both servers restarted (per the hub's log)")
    assert _server_pid(hub, "nats-server") not in killed
    assert _server_pid(hub, "postgres") not in killed

    async def accepted() -> bool:
        status, _ = await _post(info["http_url"], gateway, _readings("after", 50))
        return status == 202

    await eventually(accepted, timeout=30, what="a post accepted by the workers after the restarts")

    async def all_stored() -> bool:
        return len(await _stored_ids(info["http_url"], viewer)) == 100

    await eventually(all_stored, timeout=60, what="readings from before and after the restarts stored")

    # The restarted servers are the hub's children like the first ones: they stop with it.
    assert hub.stop() == 0

    async def all_gone() -> bool:
        return not processes_under(workdir)

    await eventually(all_gone, timeout=10, what="no process of the data dir left")
