"""Timers are rows, not coroutines: a timer pending when the alarm engine is SIGKILLed fires after
its restart within a second of when it was due, dated at its due time, once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.alarms.adapters.decode import read_transition
from services.alarms.channel import ALARM_CHANNEL
from services.common.auth.keys import create_key
from services.common.bus.connection import connect_bus
from services.hub.bootstrap import Endpoints, Hub
from tests.conftest import DEMO_SITES, EXTRA_SITE, REPO, eventually, hub_config

SITE, TENANT, DEVICE = "ulsan-refinery", "ulsan-refining", "gd-cdu1-101"
STALE_S = 15
ALARM = f"{DEVICE}--gas-h2s-stale"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class AlarmsProcess:
    """`safetyhub run alarms` against the test's NATS and PostgreSQL."""

    def __init__(self, config: Path, nats_url: str, database_url: str, log: Path) -> None:
        self.port = _free_port()
        env = {**os.environ, "SAFETYHUB_NATS_URL": nats_url, "SAFETYHUB_DATABASE_URL": database_url}
        command = [sys.executable, "-m", "services.hub.cli", "run", "alarms", "--config", str(config)]
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [*command, "--http-port", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def ready(self, session: aiohttp.ClientSession) -> None:
        async def probe() -> bool:
            assert self.proc.poll() is None, f"the alarm engine exited with {self.proc.returncode}"
            try:
                async with session.get(f"http://127.0.0.1:{self.port}/readyz") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(probe, timeout=60, what="the alarm engine to be ready")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def _config(folder: Path) -> Path:
    """The demo rules with the H2S stale time shortened, so the test waits less."""
    rules = folder / "rules.yaml"
    demo = (REPO / "sites" / "alarms" / "ulsan-demo.yaml").read_text(encoding="utf-8")
    head = "  - id: gas-h2s-stale\n    selector: {kind: gas.h2s}\n    condition: stale\n    stale_s: "
    shorter = demo.replace(head + "30", head + str(STALE_S))
    assert shorter != demo
    rules.write_text(shorter, encoding="utf-8")
    config = folder / "hub.yaml"
    config.write_text(f"sites: ['{DEMO_SITES}', '{EXTRA_SITE}']\nalarms:\n  rules: ['{rules}']\n")
    return config


async def _published(nats_url: str) -> list[tuple[str, str | None, datetime]]:
    """Every transition of the alarm on the ALARMS stream."""
    nc = await connect_bus(nats_url, name="timer-test")
    try:
        sub = await nc.jetstream().subscribe(
            ALARM_CHANNEL.subject(TENANT, SITE, ALARM),
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        seen = [read_transition(await sub.next_msg(timeout=10))[0]]
        with contextlib.suppress(TimeoutError):
            while True:
                seen.append(read_transition(await sub.next_msg(timeout=1.0))[0])
        return [(t.new.value, t.timer, t.at) for t in seen]
    finally:
        await nc.close()


@pytest.fixture
async def ingest(nats_url: str, database_url: str) -> AsyncIterator[tuple[Hub, str]]:
    """Intake only, in this process: the alarm engine runs apart, to be killed."""
    hub = Hub(hub_config(), REPO, Endpoints(nats_url, database_url), ["ingest"])
    await hub.start()
    key = await create_key(hub.pool, tenant=TENANT, role="gateway")
    yield hub, key
    await hub.stop()


async def test_a_timer_pending_at_sigkill_fires_after_restart_within_a_second_of_due_once(
    ingest: tuple[Hub, str], nats_url: str, database_url: str, tmp_path: Path
) -> None:
    hub, key = ingest
    config = _config(tmp_path)
    pool = hub.pool

    async with aiohttp.ClientSession() as session:
        first = AlarmsProcess(config, nats_url, database_url, tmp_path / "first.log")
        try:
            await first.ready(session)
            reading = {"site": SITE, "device": DEVICE, "kind": "gas.h2s", "unit": "ppm", "value": 0.4}
            headers = {"Authorization": f"Bearer {key}"}
            async with session.post(
                hub.http_url + "/v1/observations", json=[reading], headers=headers
            ) as resp:
                assert resp.status == 202

            async def armed() -> datetime | None:
                due: datetime | None = await pool.fetchval(
                    "SELECT due FROM alarm_points WHERE tenant = $1 AND site = $2 AND alarm_id = $3",
                    TENANT,
                    SITE,
                    ALARM,
                )
                return due

            due = await eventually(armed, what="the stale timer armed")
            first.kill()
        finally:
            first.stop()
        assert datetime.now(UTC) < due - timedelta(seconds=3), "too slow to kill before the timer was due"

        second = AlarmsProcess(config, nats_url, database_url, tmp_path / "second.log")
        try:
            await second.ready(session)
            assert datetime.now(UTC) < due, "the restart took longer than the timer had left"

            async def fired() -> float | None:
                count = await pool.fetchval(
                    "SELECT count(*) FROM alarm_transitions WHERE alarm_id = $1 AND timer = 'stale'", ALARM
                )
                return time.time() if count else None

            seen = await eventually(fired, timeout=STALE_S + 10, what="the stale timer to fire")
            late = seen - due.timestamp()
            assert late <= 1.0, f"fired {late:.2f} s after due"
            row = await pool.fetchrow(
                "SELECT at, new_state FROM alarm_transitions WHERE alarm_id = $1 AND timer = 'stale'", ALARM
            )
            assert (row["at"], row["new_state"]) == (due, "UNACK")  # dated at its due time

            # Once: in the table and on the stream, also after a few more scheduler passes.
            await asyncio.sleep(1.0)
            assert (
                await pool.fetchval("SELECT count(*) FROM alarm_transitions WHERE alarm_id = $1", ALARM) == 1
            )
            assert await _published(nats_url) == [("UNACK", "stale", due)]
        finally:
            second.stop()
