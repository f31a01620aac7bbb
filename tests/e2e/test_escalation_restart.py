"""An escalation waiting for its next step survives a SIGKILL of `safetyhub up`: after the
restart the step is sent within a second of when it was due, and once."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import DEMO_SITES, REPO, eventually
from tests.e2e.test_hub_process import CLI, HubProcess
from tests.integration.webhook_receiver import Receiver, receiving

pytestmark = pytest.mark.e2e

WAIT_S = 20.0  # the first step's wait: longer than a restart takes


class EscalatingHub(HubProcess):
    def __init__(self, workdir: Path) -> None:
        self.data_dir = workdir / "data"
        self.log = (workdir / "hub.log").open("ab")
        config = workdir / "escalating.yaml"
        config.write_text(
            f"sites: ['{DEMO_SITES}']\nescalation:\n  poll_interval_s: 0.1\n  total_timeout_s: 2\n"
        )
        command = [*CLI, "up", "--data-dir", str(self.data_dir), "--http-port", "0", "--config", str(config)]
        self.proc = subprocess.Popen(command, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        self.info: dict[str, Any] = {}


async def api(url: str, key: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url + path, json=body, headers={"Authorization": f"Bearer {key}"}) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def test_a_waiting_step_fires_on_time_and_once_after_sigkill(workdir: Path) -> None:
    hub = EscalatingHub(workdir)
    info = await hub.ready()
    url = info["http_url"]
    admin, gateway = hub.key("ulsan-refining", "admin"), hub.key("ulsan-refining", "gateway")
    async with receiving(Receiver()) as first, receiving(Receiver()) as second:
        ids = []
        for receiver in (first, second):
            # Filters that take no gas release: what arrives comes from the policy.
            status, created = await api(
                url, admin, "POST", "/v1/endpoints", {"url": receiver.url, "types": ["intrusion"]}
            )
            assert status == 201, created
            receiver.secret = created["secret"]
            ids.append(created["id"])
        steps = [{"endpoints": [ids[0]], "waitS": WAIT_S}, {"endpoints": [ids[1]], "waitS": 3600}]
        status, policy = await api(
            url, admin, "POST", "/v1/policies", {"steps": steps, "types": ["gas_release"]}
        )
        assert status == 201, policy

        reading = {
            "id": f"restart-{uuid.uuid4().hex[:8]}",
            "site": "ulsan-refinery",
            "device": "gd-fcc2-203",
            "kind": "gas.h2s",
            "unit": "ppm",
            "value": 25.0,
            "time": (datetime.now(UTC) - timedelta(seconds=5)).isoformat(),
        }
        status, _ = await api(url, gateway, "POST", "/v1/observations", [reading])
        assert status == 202
        await eventually(lambda: asyncio.sleep(0, first.received), timeout=60, what="the first step")
        opened_at = first.received[0].at
        hub.stop(signal.SIGKILL)

        again = EscalatingHub(workdir)
        await again.ready()
        assert time.monotonic() - opened_at < WAIT_S - 2, "the restart took longer than the wait"
        await eventually(
            lambda: asyncio.sleep(0, second.received), timeout=WAIT_S + 30, what="the second step"
        )
        late = second.received[0].at - opened_at - WAIT_S
        assert -0.5 <= late <= 1.0, late
        await asyncio.sleep(2.0)
        escalated = [r for r in second.received if r.event["type"].endswith(".escalated.v1")]
        assert len(escalated) == 1 and set(second.by_id.values()) == {1}
        assert escalated[0].event["escalationstep"] == 1
        assert again.stop() == 0
