"""`safetyhub up` as a user runs it: a real process with its embedded NATS and PostgreSQL.

Covers what only a whole process shows: nothing accepted is lost when the hub is SIGKILLed right
after a 202; SIGTERM leaves no process behind; workers share one port; bad configuration stops
start-up with file, line and key; one data dir serves one hub at a time.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import psutil
import pytest

from tests.conftest import DEMO_SITES, REPO, eventually
from tests.e2e.conftest import processes_under

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "services.hub.cli"]


def _config(workdir: Path, extra: str = "") -> Path:
    # A short ack wait: after a kill, unacknowledged deliveries come back within seconds.
    path = workdir / "hub.yaml"
    path.write_text(f"sites: ['{DEMO_SITES}']\nstore:\n  ack_wait_s: 3\n{extra}")
    return path


class HubProcess:
    def __init__(self, workdir: Path, *args: str) -> None:
        self.data_dir = workdir / "data"
        self.log = (workdir / "hub.log").open("ab")
        command = [*CLI, "up", "--data-dir", str(self.data_dir), "--http-port", "0"]
        command += ["--config", str(_config(workdir)), *args]
        self.proc = subprocess.Popen(command, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        self.info: dict[str, Any] = {}

    async def ready(self, timeout: float = 90.0) -> dict[str, Any]:
        runtime = self.data_dir / "runtime.json"

        async def started() -> dict[str, Any] | None:
            assert self.proc.poll() is None, f"hub exited with {self.proc.returncode}"
            if runtime.exists():
                info: dict[str, Any] = json.loads(runtime.read_text())
                if info.get("pid") == self.proc.pid:
                    return info
            return None

        self.info = await eventually(started, timeout=timeout, what="the hub's runtime file")
        return self.info

    def create_key(self, tenant: str, role: str, *limits: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *CLI,
                "keys",
                "create",
                "--data-dir",
                str(self.data_dir),
                "--tenant",
                tenant,
                "--role",
                role,
                *limits,
            ],
            check=False,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def key(self, tenant: str, role: str, *limits: str) -> str:
        out = self.create_key(tenant, role, *limits)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip().splitlines()[-1]

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self.log.close()
        return code


def _readings(prefix: str, count: int) -> bytes:
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    return msgspec.json.encode(
        [
            {
                "id": f"{prefix}-{n}",
                "site": "ulsan-refinery",
                "device": "gd-cdu1-101",
                "kind": "gas.h2s",
                "value": n / 10,
                "time": (base + timedelta(seconds=n)).isoformat(),
            }
            for n in range(count)
        ]
    )


async def _post(url: str, key: str, body: bytes) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/v1/observations", data=io.BytesIO(body), headers=headers) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def _stored_ids(url: str, key: str) -> set[str]:
    ids: set[str] = set()
    params = {"limit": "1000"}
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(
                url + "/v1/observations", params=params, headers={"Authorization": f"Bearer {key}"}
            ) as resp:
                page = await resp.json()
            ids.update(item["id"] for item in page["items"])
            if not page["next"]:
                return ids
            params["cursor"] = page["next"]


async def test_sigkill_right_after_202_loses_nothing(workdir: Path) -> None:
    hub = HubProcess(workdir)
    info = await hub.ready()
    gateway = hub.key("ulsan-refining", "gateway")
    viewer = hub.key("ulsan-refining", "viewer")

    status, body = await _post(info["http_url"], gateway, _readings("k", 2000))
    assert status == 202 and len(body["accepted"]) == 2000
    hub.stop(signal.SIGKILL)

    again = HubProcess(workdir)
    info = await again.ready()

    async def all_stored() -> bool:
        return len(await _stored_ids(info["http_url"], viewer)) == 2000

    await eventually(all_stored, timeout=60, what="all 2,000 accepted observations after the restart")
    assert again.stop() == 0


async def test_a_key_made_for_one_detector_posts_for_it_alone(workdir: Path) -> None:
    hub = HubProcess(workdir)
    info = await hub.ready()
    detector = hub.key("ulsan-refining", "gateway", "--sites", "ulsan-refinery", "--devices", "gd-cdu1-101")

    status, _ = await _post(info["http_url"], detector, _readings("own", 3))
    assert status == 202
    other = _readings("other", 1).replace(b"gd-cdu1-101", b"gd-cdu1-102")
    status, body = await _post(info["http_url"], detector, other)
    assert status == 403 and body["errors"][0]["field"] == "device"
    # An empty limit is refused, never read as "no limit".
    refused = hub.create_key("ulsan-refining", "gateway", "--devices", "")
    assert refused.returncode != 0 and "no devices" in refused.stderr
    assert hub.stop() == 0


async def test_sigterm_stops_the_hub_and_its_servers(workdir: Path) -> None:
    hub = HubProcess(workdir)
    await hub.ready()
    servers = [p for p in processes_under(workdir) if p.pid != hub.proc.pid]
    assert {p.name() for p in servers} >= {"nats-server", "postgres"}
    assert hub.stop() == 0

    async def all_gone() -> bool:
        return not processes_under(workdir)

    await eventually(all_gone, timeout=10, what="no process of the data dir left")


async def test_workers_share_one_port_and_sum_their_metrics(workdir: Path) -> None:
    hub = HubProcess(workdir, "--workers", "2")
    info = await hub.ready()
    workers = [p for p in processes_under(workdir) if "services.hub.worker" in " ".join(p.cmdline())]
    assert len(workers) == 2
    gateway = hub.key("ulsan-refining", "gateway")
    viewer = hub.key("ulsan-refining", "viewer")
    for n in range(8):  # new connections, spread over the workers by the kernel
        status, _ = await _post(info["http_url"], gateway, _readings(f"w{n}", 100))
        assert status == 202

    async def all_stored() -> bool:
        return len(await _stored_ids(info["http_url"], viewer)) == 800

    await eventually(all_stored, timeout=30, what="800 observations written by the workers")
    async with aiohttp.ClientSession() as session, session.get(info["http_url"] + "/metrics") as resp:
        metrics = await resp.text()
    accepted = sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("safetyhub_ingest_accepted_total")
    )
    assert accepted == 800

    # The alarm engine's metrics too: its per-site live figures once (the workers' "max"), though
    # every worker keeps them, and (once refreshed) as the alarm API counts.
    name = 'safetyhub_alarms_site_unacknowledged{site="ulsan-refinery",tenant="ulsan-refining"}'

    async def alarm_metrics() -> list[str] | None:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {viewer}"}) as session:
            async with session.get(info["http_url"] + "/metrics") as resp:
                lines = (await resp.text()).splitlines()
            params = {"state": ["UNACK", "RTNUN"]}
            async with session.get(info["http_url"] + "/v1/alarms", params=params) as resp:
                unacknowledged = len((await resp.json())["items"])
        live = [line for line in lines if line.startswith(name)]
        assert len(live) <= 1, live
        return lines if live == [f"{name} {unacknowledged:.1f}"] else None

    lines = await eventually(
        alarm_metrics, timeout=30, what="the alarm engine's live figures as the API counts"
    )
    assert any(line.startswith("safetyhub_alarms_observations_evaluated_total") for line in lines)
    assert hub.stop() == 0
    assert not [p for p in processes_under(workdir) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


async def test_a_second_hub_on_the_same_data_dir_is_refused(workdir: Path) -> None:
    hub = HubProcess(workdir)
    await hub.ready()
    second = await asyncio.to_thread(
        subprocess.run,
        [*CLI, "up", "--data-dir", str(hub.data_dir), "--http-port", "0", "--config", str(_config(workdir))],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 1
    assert "data dir" in second.stderr.lower() or "another" in second.stderr.lower()
    assert hub.stop() == 0


def _up_with(config: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "up", "--data-dir", str(workdir / "data"), "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_bad_config_file_stops_start_up_naming_file_line_and_key(workdir: Path) -> None:
    config = workdir / "bad.yaml"
    config.write_text("http:\n  port: 8080\nstore:\n  batch_mx: 10\n")
    result = _up_with(config, workdir)
    assert result.returncode == 2
    assert f"{config}:4: store.batch_mx" in result.stderr
    assert not (workdir / "data").exists()  # nothing was started


def test_a_bad_site_file_stops_start_up_before_any_server(workdir: Path) -> None:
    sites = workdir / "sites.yaml"
    text = DEMO_SITES.read_text().replace("type: gas_detector", "typ: gas_detector", 1)
    sites.write_text(text)
    line = next(n for n, row in enumerate(text.splitlines(), start=1) if "typ: gas_detector" in row)
    config = workdir / "hub.yaml"
    config.write_text(f"sites: ['{sites}']\n")
    result = _up_with(config, workdir)
    assert result.returncode == 2
    assert f"{sites}:{line}: sites[0].devices[0].typ" in result.stderr
    assert not (workdir / "data" / "pg").exists()


@pytest.fixture(autouse=True)
def _no_env_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests are about the embedded runtime; a hub given external servers would not own any.
    monkeypatch.delenv("SAFETYHUB_NATS_URL", raising=False)
    monkeypatch.delenv("SAFETYHUB_DATABASE_URL", raising=False)
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
