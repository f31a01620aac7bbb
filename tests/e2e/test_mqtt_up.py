"""`safetyhub up` with MQTT: with `ingest.mqtt.embedded: true` the hub starts its own broker on
loopback and a sensor's MQTT reading reaches the store, with no broker installed; against a broker
of its own, a hub killed with SIGKILL loses no QoS 1 message and stores none twice."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import asyncpg
import msgspec
import pytest

from tests.conftest import DEMO_SITES, eventually
from tests.e2e.test_hub_process import HubProcess
from tests.integration.test_mqtt_bridge import forget_session

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


@pytest.fixture
async def plant_broker(workdir: Path) -> AsyncIterator[str]:
    """A plant's broker outside the hub: Mosquitto, started for the test (or SAFETYHUB_MQTT_URL's).

    Not the embedded amqtt broker: it gives up on a QoS 1 message whose PUBACK is 5 s late and
    never sends it again, where MQTT 3.1.1 (§4.4) has the broker resend what a persistent session
    had not acknowledged when it reconnects; a hub restarting after a kill takes longer than that.
    """
    external = os.environ.get("SAFETYHUB_MQTT_URL")
    if external:
        yield external
        return
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if binary is None:
        pytest.skip("needs Mosquitto (mosquitto on PATH or SAFETYHUB_MQTT_URL)")
    port = _free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 10000\n"
    )
    broker = _start(binary, conf)
    try:

        async def listening() -> bool:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return False
            writer.close()
            return True

        await eventually(listening, what="Mosquitto listening")
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        broker.terminate()
        broker.wait(timeout=10)


def _start(binary: str, conf: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_sigkill_loses_no_qos1_message_and_stores_none_twice(
    workdir: Path, plant_broker: str, protocol: str
) -> None:
    """The bridge's persistent QoS 1 session outlives a SIGKILLed hub: what was in hand when it
    died (taken from the broker, not yet acknowledged) and what was published while it was down
    come again after the restart; each is stored once. In MQTT 5 too, where the session is kept
    by its expiry interval and the bridge holds up to its own window (Receive Maximum) at once."""
    mqtt_url = plant_broker
    host, port = mqtt_url.removeprefix("mqtt://").rsplit(":", 1)
    client_id = f"e2e-kill-{uuid.uuid4().hex[:8]}"
    prefix = f"kill{uuid.uuid4().hex[:8]}"
    config = workdir / "hub-mqtt.yaml"
    config.write_text(
        f"sites: ['{DEMO_SITES}']\n"
        "store:\n"
        "  ack_wait_s: 3\n"
        "ingest:\n"
        "  mqtt:\n"
        f"    url: {mqtt_url}\n"
        "    username: safetyhub\n"
        f"    client_id: {client_id}\n"
        f"    protocol: '{protocol}'\n"
        "    reconnect: {min_s: 0.2, max_s: 1.0}\n"
        "    topics:\n"
        f"      - pattern: '{prefix}/{{site}}/{{device}}/{{kind}}'\n"
        "        value: $.v\n"
        "        time: $.ts\n"
    )
    topic = f"{prefix}/ulsan-refinery/gd-cdu1-101/gas.h2s"
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    total = 301

    async def publish(numbers: range) -> None:
        async with aiomqtt.Client(host, int(port), username="sensor") as sensor:
            for n in numbers:
                payload = {"v": n / 10, "ts": (base + timedelta(seconds=n)).isoformat()}
                await sensor.publish(topic, msgspec.json.encode(payload), qos=1)

    hub = HubProcess(workdir, "--config", str(config))
    try:
        info = await hub.ready()
        conn = await asyncpg.connect(info["database_url"])
        try:

            async def count() -> int:
                return int(await conn.fetchval("SELECT count(*) FROM observations"))

            await publish(range(1))  # the session exists and reads: the first reading is stored
            await eventually(lambda: _at_least(count, 1), timeout=30, what="the first reading stored")
            await publish(range(1, 151))  # the hub may hold some of these, unacknowledged, as it dies
        finally:
            await conn.close()
        assert hub.stop(signal.SIGKILL) == -signal.SIGKILL
        await publish(range(151, total))  # the hub is down: the broker keeps these for its session

        again = HubProcess(workdir, "--config", str(config))
        try:
            info = await again.ready()
            conn = await asyncpg.connect(info["database_url"])
            try:

                async def all_stored() -> list[asyncpg.Record] | None:
                    rows = await conn.fetch("SELECT value FROM observations ORDER BY time")
                    return rows if len(rows) >= total else None

                rows = await eventually(all_stored, timeout=60, what=f"all {total} readings stored")
                await asyncio.sleep(2)  # anything sent twice would have arrived by now
                rows = await conn.fetch("SELECT value, id FROM observations ORDER BY time")
            finally:
                await conn.close()
            assert [row["value"] for row in rows] == [n / 10 for n in range(total)]
            assert len({row["id"] for row in rows}) == total
        finally:
            assert again.stop() == 0
    finally:
        hub.stop(signal.SIGKILL)
        await forget_session(mqtt_url, client_id)


async def _at_least(count: Callable[[], Awaitable[int]], wanted: int) -> bool:
    return await count() >= wanted
