"""`safetyhub up` with `ingest.opcua.file`: the hub reads the file beside its config, subscribes
to an OPC UA server's node and stores its value changes; /readyz names the server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest

from tests.conftest import DEMO_SITES, eventually
from tests.e2e.test_hub_process import HubProcess
from tests.integration.opcua_plant import PlantServer, opcua_file

pytestmark = pytest.mark.e2e

H2S = "ns=2;s=CDU1.GD101.H2S"


async def test_up_stores_an_opc_ua_value_change(workdir: Path) -> None:
    start = datetime.now(UTC) - timedelta(minutes=2)
    server = PlantServer({H2S: 3.0}, at=start)
    await server.start()
    opcua_file(
        workdir, server.endpoint, f'          - {{node: "{H2S}", device: gd-cdu1-101, kind: gas.h2s}}\n'
    )
    config = workdir / "hub-opcua.yaml"
    # A path relative to the config file, as an operator writes it.
    config.write_text(f"sites: ['{DEMO_SITES}']\ningest:\n  opcua:\n    file: opcua-dcs-cdu.yaml\n")
    hub = HubProcess(workdir, "--config", str(config))  # the last --config is the one used
    try:
        info = await hub.ready()

        async def peer() -> dict[str, Any] | None:
            async with aiohttp.ClientSession() as session, session.get(info["http_url"] + "/readyz") as resp:
                body: dict[str, Any] = msgspec.json.decode(await resp.read())
            return body if body.get("peers", {}).get("ingest.opcua.dcs-cdu") == "ok" else None

        await eventually(peer, timeout=30, what="the OPC UA server connected")
        await server.write(H2S, 8.5, start + timedelta(seconds=1))
        conn = await asyncpg.connect(info["database_url"])
        try:

            async def stored() -> list[asyncpg.Record] | None:
                rows = await conn.fetch(
                    "SELECT tenant, device, kind, value, unit FROM observations ORDER BY time"
                )
                return rows if len(rows) >= 2 else None

            rows = await eventually(stored, timeout=30, what="both values stored")
        finally:
            await conn.close()
        assert [tuple(row) for row in rows] == [
            ("ulsan-refining", "gd-cdu1-101", "gas.h2s", 3.0, "ppm"),
            ("ulsan-refining", "gd-cdu1-101", "gas.h2s", 8.5, "ppm"),
        ]
    finally:
        assert hub.stop() == 0
        await server.stop()
