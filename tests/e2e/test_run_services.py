"""`safetyhub run ingest` and `safetyhub run store` as separate processes, as Kubernetes runs them.

They share nothing but NATS and PostgreSQL: an observation posted to the ingest process is
written by the store process and read back from the store's API.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import msgspec
import pytest

from services.common.auth.keys import create_key
from services.hub.supervisor import free_port
from tests.conftest import DEMO_SITES, REPO, eventually

pytestmark = pytest.mark.e2e


@contextlib.contextmanager
def service(
    name: str, workdir: Path, nats_url: str, database_url: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port("127.0.0.1")
    config = workdir / "hub.yaml"
    config.write_text(f"sites: ['{DEMO_SITES}']\nstore:\n  ack_wait_s: 3\n")
    env = {**os.environ, "SAFETYHUB_NATS_URL": nats_url, "SAFETYHUB_DATABASE_URL": database_url}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with (workdir / f"{name}.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.hub.cli",
                "run",
                name,
                "--http-port",
                str(port),
                "--config",
                str(config),
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


async def _ready(session: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes]) -> bool:
    assert proc.poll() is None, f"service exited with {proc.returncode}"
    with contextlib.suppress(aiohttp.ClientError):
        async with session.get(url + "/readyz") as resp:
            return resp.status == 200
    return False


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_ingest_and_store_as_separate_processes(
    reachable_dir: Path, nats_url: str, database_url: str, session: aiohttp.ClientSession
) -> None:
    workdir = reachable_dir
    with (
        service("ingest", workdir, nats_url, database_url) as (ingest_url, ingest),
        service("store", workdir, nats_url, database_url) as (store_url, store),
    ):
        await eventually(lambda: _ready(session, ingest_url, ingest), timeout=60, what="ingest ready")
        await eventually(lambda: _ready(session, store_url, store), timeout=60, what="store ready")
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
        try:
            gateway = await create_key(pool, tenant="ulsan-refining", role="gateway")
            viewer = await create_key(pool, tenant="ulsan-refining", role="viewer")
        finally:
            await pool.close()

        body = msgspec.json.encode(
            [
                {
                    "id": f"run-{n}",
                    "site": "ulsan-refinery",
                    "device": "gd-fcc2-201",
                    "kind": "gas.lel",
                    "value": float(n),
                    "time": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                }
                for n in range(20)
            ]
        )
        headers = {"Authorization": f"Bearer {gateway}", "Content-Type": "application/json"}
        async with session.post(
            ingest_url + "/v1/observations", data=io.BytesIO(body), headers=headers
        ) as resp:
            assert resp.status == 202

        async def stored() -> list[str] | None:
            async with session.get(
                store_url + "/v1/observations",
                params={"device": "gd-fcc2-201"},
                headers={"Authorization": f"Bearer {viewer}"},
            ) as resp:
                ids = [item["id"] for item in (await resp.json())["items"]]
            return ids if len(ids) == 20 else None

        ids = await eventually(stored, timeout=30, what="the store process to write what ingest accepted")
        assert sorted(ids) == sorted(f"run-{n}" for n in range(20))

        # Each process serves only its own service's routes.
        async with session.get(
            ingest_url + "/v1/observations", headers={"Authorization": f"Bearer {viewer}"}
        ) as resp:
            assert resp.status == 405
        async with session.post(store_url + "/v1/observations", data=b"[]", headers=headers) as resp:
            assert resp.status == 405
    assert ingest.returncode == 0 and store.returncode == 0
