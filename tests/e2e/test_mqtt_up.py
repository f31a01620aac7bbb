"""`safetyhub up` with `ingest.mqtt.embedded: true`: the hub starts its own broker on loopback and
a sensor's MQTT reading reaches the store, with no broker installed."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import asyncpg
import msgspec
import pytest

from tests.conftest import DEMO_SITES, eventually
from tests.e2e.test_hub_process import HubProcess

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_up_with_the_embedded_broker_stores_an_mqtt_reading(workdir: Path) -> None:
    port = _free_port()
    config = workdir / "hub-mqtt.yaml"
    config.write_text(
        f"sites: ['{DEMO_SITES}']\n"
        "ingest:\n"
        "  mqtt:\n"
        "    embedded: true\n"
        f"    broker: {{port: {port}}}\n"
        f"    client_id: e2e-{uuid.uuid4().hex[:8]}\n"
        "    topics:\n"
        "      - pattern: 'plant/{site}/{device}/{kind}'\n"
        "        value: $.v\n"
    )
    hub = HubProcess(workdir, "--config", str(config))  # the last --config is the one used
    try:
        info = await hub.ready()
        when = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()

        async def published() -> bool:
            try:
                async with aiomqtt.Client("127.0.0.1", port, username="sensor") as sensor:
                    topic = "plant/ulsan-refinery/gd-cdu1-101/gas.h2s"
                    await sensor.publish(topic, msgspec.json.encode({"v": 6.5, "time": when}), qos=1)
                    return True
            except aiomqtt.MqttError:
                return False

        await eventually(published, what="the embedded broker accepting a reading")
        conn = await asyncpg.connect(info["database_url"])
        try:

            async def stored() -> list[asyncpg.Record] | None:
                rows = await conn.fetch("SELECT tenant, device, kind, value, unit FROM observations")
                return rows or None

            [row] = await eventually(stored, timeout=30, what="the reading stored")
        finally:
            await conn.close()
        assert tuple(row) == ("ulsan-refining", "gd-cdu1-101", "gas.h2s", 6.5, "ppm")
    finally:
        assert hub.stop() == 0
