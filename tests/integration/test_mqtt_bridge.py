"""The MQTT bridge against a real broker (Mosquitto or the embedded one), NATS and PostgreSQL:
messages reach the store, bad ones reach DEADLETTER with the reason, and QoS 1 messages published
while the hub is down are stored once it is back."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiomqtt
import msgspec
import nats
import pytest
from nats.js import JetStreamContext

from services.common.bus.deadletter import CONSUMER_HEADER, REASON_HEADER, SUBJECT_HEADER
from services.common.bus.streams import ensure_streams
from services.common.contracts.quality import quality_name
from services.common.contracts.sparkplug import SparkplugPayload
from services.hub.bootstrap import Endpoints, Hub
from services.ingest.bridges.mqtt_config import EmbeddedBrokerConfig, MqttConfig, TopicTemplate
from services.ingest.bridges.sparkplug_config import SparkplugConfig, SparkplugGroup
from services.ingest.config import IngestConfig
from tests.builders import RECENT
from tests.conftest import REPO, eventually, hub_config, hub_streams

pytestmark = pytest.mark.integration

SITE = "ulsan-refinery"
DEVICE = "gd-cdu1-101"


def broker_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 1883


@contextlib.asynccontextmanager
async def sensor(url: str) -> AsyncIterator[aiomqtt.Client]:
    """A device's client; a user name, which the embedded broker asks of every client."""
    host, port = broker_address(url)
    name = f"sensor-{uuid.uuid4().hex[:8]}"
    async with aiomqtt.Client(host, port, username="sensor", identifier=name) as client:
        yield client


async def forget_session(url: str, client_id: str) -> None:
    """Drop the bridge's persistent session at the broker, so no test leaves one behind."""
    host, port = broker_address(url)
    with contextlib.suppress(aiomqtt.MqttError):
        async with aiomqtt.Client(host, port, username="safetyhub", identifier=client_id, clean_session=True):
            pass


def mqtt_config(url: str | None, prefix: str, client_id: str, **changes: Any) -> MqttConfig:
    config = MqttConfig(
        url=url,
        client_id=client_id,
        username="safetyhub",
        reconnect=msgspec.structs.replace(MqttConfig().reconnect, min_s=0.2, max_s=1.0),
        topics=[TopicTemplate(pattern=prefix + "/{tenant}/{site}/{device}/{kind}", value="$.v", time="$.ts")],
    )
    return msgspec.structs.replace(config, **changes)


@contextlib.asynccontextmanager
async def bridged_hub(nats_url: str, database_url: str, mqtt: MqttConfig) -> AsyncIterator[Hub]:
    hub = Hub(hub_config(ingest=IngestConfig(mqtt=mqtt)), REPO, Endpoints(nats_url, database_url))
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


async def ready_peers(hub: Hub) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(hub.http_url + "/readyz") as resp:
        body: dict[str, Any] = msgspec.json.decode(await resp.read())
        body["http_status"] = resp.status
        return body


async def bridge_connected(hub: Hub) -> bool:
    body = await ready_peers(hub)
    return bool(body.get("peers", {}).get("ingest.mqtt") == "ok")


def reading(n: int, **fields: Any) -> bytes:
    return msgspec.json.encode({"v": 1.0 + n, "ts": (RECENT + timedelta(seconds=n)).isoformat(), **fields})


async def stored(hub: Hub, device: str = DEVICE) -> list[tuple[str, float, str]]:
    rows = await hub.pool.fetch(
        "SELECT kind, value, unit FROM observations WHERE device = $1 ORDER BY time", device
    )
    return [(r["kind"], r["value"], r["unit"]) for r in rows]


async def dead_letters(nats_url: str, expected: int) -> list[tuple[str, dict[str, str], bytes]]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe("deadletter.bridge-mqtt.>", durable=None, stream="DEADLETTER")
        found: list[tuple[str, dict[str, str], bytes]] = []
        with contextlib.suppress(nats.errors.TimeoutError):
            while len(found) < expected:
                for msg in await sub.fetch(expected - len(found), timeout=5):
                    found.append((msg.subject, dict(msg.headers or {}), msg.data))
        return found
    finally:
        await nc.close()


@pytest.fixture
def names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:10]
    return f"plant{tag}", f"safetyhub-test-{tag}"


async def test_json_messages_through_the_broker_reach_the_store(
    nats_url: str, database_url: str, mqtt_url: str, names: tuple[str, str]
) -> None:
    prefix, client_id = names
    try:
        async with bridged_hub(nats_url, database_url, mqtt_config(mqtt_url, prefix, client_id)) as hub:
            await eventually(lambda: bridge_connected(hub), what="the bridge connected")
            async with sensor(mqtt_url) as client:
                for n in range(3):
                    topic = f"{prefix}/ulsan-refining/{SITE}/{DEVICE}/gas.h2s"
                    await client.publish(topic, reading(n), qos=1)
                await client.publish(f"{prefix}/ulsan-refining/{SITE}/{DEVICE}/gas.lel", reading(10), qos=1)

            rows = await eventually(lambda: _at_least(hub, 4), what="four stored observations")
            assert rows == [
                ("gas.h2s", 1.0, "ppm"),
                ("gas.h2s", 2.0, "ppm"),
                ("gas.h2s", 3.0, "ppm"),
                ("gas.lel", 11.0, "%LEL"),
            ]
            tenants = await hub.pool.fetch("SELECT DISTINCT tenant FROM observations")
            assert [r["tenant"] for r in tenants] == ["ulsan-refining"]
    finally:
        await forget_session(mqtt_url, client_id)


async def _at_least(hub: Hub, count: int) -> list[tuple[str, float, str]] | None:
    rows = await stored(hub)
    return rows if len(rows) >= count else None


async def test_bad_messages_go_to_deadletter_with_the_reason_and_the_bridge_goes_on(
    nats_url: str, database_url: str, mqtt_url: str, names: tuple[str, str]
) -> None:
    prefix, client_id = names
    good = f"{prefix}/ulsan-refining/{SITE}/{DEVICE}/gas.h2s"
    bad = [
        (good, b"{not json", "malformed JSON"),
        (f"{prefix}/ulsan-refining/{SITE}/gd-nope/gas.h2s", reading(1), "'gd-nope' is not registered"),
        (f"{prefix}/mipo-petrochem/{SITE}/{DEVICE}/gas.h2s", reading(2), "not a site of tenant 'mipo-"),
        (good, msgspec.json.encode({"v": "high"}), "value"),
    ]
    try:
        async with bridged_hub(nats_url, database_url, mqtt_config(mqtt_url, prefix, client_id)) as hub:
            await eventually(lambda: bridge_connected(hub), what="the bridge connected")
            async with sensor(mqtt_url) as client:
                for topic, payload, _ in bad:
                    await client.publish(topic, payload, qos=1)
                await client.publish(good, reading(5), qos=1)

            assert await eventually(lambda: _at_least(hub, 1), what="the good message stored") == [
                ("gas.h2s", 6.0, "ppm")
            ]
            letters = await dead_letters(nats_url, len(bad))
    finally:
        await forget_session(mqtt_url, client_id)

    assert len(letters) == len(bad)
    by_payload = {data: (subject, headers) for subject, headers, data in letters}
    for topic, payload, words in bad:
        subject, headers = by_payload[payload]
        assert words in headers[REASON_HEADER]
        assert headers[SUBJECT_HEADER] == topic
        assert headers[CONSUMER_HEADER] == "bridge-mqtt"
        assert re.fullmatch(r"dl-bridge-mqtt-[0-9a-f]{40}", headers["Nats-Msg-Id"])
        assert subject == "deadletter.bridge-mqtt." + topic.replace("/", ".").replace(".gas.h2s", ".gas_h2s")


async def test_messages_published_while_the_hub_is_down_are_stored_after_it_restarts(
    nats_url: str, database_url: str, mqtt_url: str, names: tuple[str, str]
) -> None:
    prefix, client_id = names
    config = mqtt_config(mqtt_url, prefix, client_id)
    topic = f"{prefix}/ulsan-refining/{SITE}/{DEVICE}/gas.h2s"
    try:
        async with bridged_hub(nats_url, database_url, config) as hub:
            await eventually(lambda: bridge_connected(hub), what="the bridge connected")
            async with sensor(mqtt_url) as client:
                await client.publish(topic, reading(0), qos=1)
            await eventually(lambda: _at_least(hub, 1), what="the first reading stored")

        # The hub is down: the broker keeps these for the bridge's persistent session.
        async with sensor(mqtt_url) as client:
            for n in range(1, 21):
                await client.publish(topic, reading(n), qos=1)

        async with bridged_hub(nats_url, database_url, config) as hub:
            rows = await eventually(lambda: _at_least(hub, 21), what="every reading stored")
            assert [value for _, value, _ in rows] == [1.0 + n for n in range(21)]
    finally:
        await forget_session(mqtt_url, client_id)


async def test_a_broker_that_is_down_is_reported_and_the_rest_of_the_hub_serves(
    nats_url: str, database_url: str, names: tuple[str, str]
) -> None:
    prefix, client_id = names
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"mqtt://127.0.0.1:{probe.getsockname()[1]}"
    async with bridged_hub(nats_url, database_url, mqtt_config(dead, prefix, client_id)) as hub:
        body = await eventually(
            lambda: _reported_down(hub), what="the bridge reported down", timeout=10
        )

    assert body["http_status"] == 200
    assert body["status"] == "ready"
    assert body["peers"]["ingest.mqtt"].startswith(f"not connected to {dead}")


async def _reported_down(hub: Hub) -> dict[str, Any] | None:
    body = await ready_peers(hub)
    peer = body.get("peers", {}).get("ingest.mqtt", "")
    return body if peer.startswith("not connected") and "yet" not in peer else None


async def test_the_embedded_broker_serves_a_hub_without_one(
    nats_url: str, database_url: str, names: tuple[str, str]
) -> None:
    prefix, client_id = names
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = mqtt_config(None, prefix, client_id, embedded=True, broker=EmbeddedBrokerConfig(port=port))
    async with bridged_hub(nats_url, database_url, config) as hub:
        await eventually(lambda: bridge_connected(hub), what="the bridge connected to the embedded broker")
        url = f"mqtt://127.0.0.1:{port}"
        async with sensor(url) as client:
            await client.publish(f"{prefix}/ulsan-refining/{SITE}/{DEVICE}/gas.h2s", reading(0), qos=1)
        assert await eventually(lambda: _at_least(hub, 1), what="the reading stored") == [
            ("gas.h2s", 1.0, "ppm")
        ]


async def test_a_message_the_bus_does_not_take_is_not_acknowledged_and_comes_again(
    nats_url: str, database_url: str, mqtt_url: str, names: tuple[str, str]
) -> None:
    prefix, client_id = names
    topic = f"{prefix}/ulsan-refining/{SITE}/{DEVICE}/gas.h2s"
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        async with bridged_hub(nats_url, database_url, mqtt_config(mqtt_url, prefix, client_id)) as hub:
            await eventually(lambda: bridge_connected(hub), what="the bridge connected")
            # No OBSERVATIONS stream: JetStream cannot store the reading.
            await js.delete_stream("OBSERVATIONS")
            async with sensor(mqtt_url) as client:
                await client.publish(topic, reading(0), qos=1)
            await eventually(lambda: _holding(hub), what="the bridge holding the message")

            await ensure_streams(js, hub_streams())
            info = await eventually(lambda: _observations_stored(js), what="the reading in the stream")
            assert info == 1
    finally:
        await nc.close()
        await forget_session(mqtt_url, client_id)


async def _holding(hub: Hub) -> bool:
    body = await ready_peers(hub)
    return str(body.get("peers", {}).get("ingest.mqtt", "")).startswith("connected, holding messages")


async def _observations_stored(js: JetStreamContext) -> int | None:
    info = await js.stream_info("OBSERVATIONS")
    return info.state.messages or None


SPARKPLUG_DOUBLE = 10


def spb(seq: int | None, *metrics: dict[str, Any], timestamp: int | None = None) -> bytes:
    """A Sparkplug B payload, encoded by the generated protobuf classes."""
    message = SparkplugPayload(timestamp=timestamp or int(RECENT.timestamp() * 1000))
    if seq is not None:
        message.seq = seq
    for fields in metrics:
        message.metrics.add(**fields)
    return message.SerializeToString()


def sparkplug_config(url: str, group: str, client_id: str) -> MqttConfig:
    return MqttConfig(
        url=url,
        client_id=client_id,
        username="safetyhub",
        sparkplug=SparkplugConfig(
            groups=[
                SparkplugGroup(
                    group=group,
                    site=SITE,
                    devices={"edge-1/det-101": DEVICE},
                    metrics={"Gas/H2S": "gas.h2s", "Gas/LEL": "gas.lel"},
                )
            ]
        ),
    )


async def quality_rows(hub: Hub) -> list[tuple[str, float | None, str]]:
    rows = await hub.pool.fetch(
        "SELECT kind, value, quality FROM observations WHERE device = $1 ORDER BY time, kind", DEVICE
    )
    return [(r["kind"], r["value"], quality_name(r["quality"])) for r in rows]


async def test_sparkplug_births_data_by_alias_gaps_and_deaths_through_the_broker(
    nats_url: str, database_url: str, mqtt_url: str, names: tuple[str, str]
) -> None:
    prefix, client_id = names
    group = prefix  # a group of this test alone
    base = int(RECENT.timestamp() * 1000)
    h2s = {"name": "Gas/H2S", "alias": 1, "datatype": SPARKPLUG_DOUBLE}
    lel = {"name": "Gas/LEL", "alias": 2, "datatype": SPARKPLUG_DOUBLE}
    try:
        async with bridged_hub(nats_url, database_url, sparkplug_config(mqtt_url, group, client_id)) as hub:
            await eventually(lambda: bridge_connected(hub), what="the bridge connected")
            async with sensor(mqtt_url) as edge:
                await edge.subscribe(f"spBv1.0/{group}/NCMD/edge-1", qos=0)
                node = f"spBv1.0/{group}"
                await edge.publish(f"{node}/NBIRTH/edge-1", spb(0, {"name": "bdSeq", "long_value": 4}), qos=1)
                await edge.publish(
                    f"{node}/DBIRTH/edge-1/det-101",
                    spb(
                        1,
                        {**h2s, "double_value": 1.5, "timestamp": base},
                        {**lel, "double_value": 2.0, "timestamp": base},
                    ),
                    qos=1,
                )
                await edge.publish(
                    f"{node}/DDATA/edge-1/det-101",
                    spb(2, {"alias": 1, "double_value": 3.5, "timestamp": base + 1000}),
                    qos=1,
                )
                await edge.publish(  # seq 3 and 4 never came: a gap
                    f"{node}/DDATA/edge-1/det-101",
                    spb(5, {"alias": 2, "double_value": 4.0, "timestamp": base + 2000}),
                    qos=1,
                )
                command = await asyncio.wait_for(anext(aiter(edge.messages)), timeout=15)
                assert command.topic.value == f"{node}/NCMD/edge-1"
                assert isinstance(command.payload, bytes)
                [rebirth] = SparkplugPayload.FromString(command.payload).metrics
                assert (rebirth.name, rebirth.boolean_value) == ("Node Control/Rebirth", True)

                await edge.publish(
                    f"{node}/NDEATH/edge-1",
                    spb(None, {"name": "bdSeq", "long_value": 4}, timestamp=base + 3000),
                    qos=1,
                )

            rows = await eventually(lambda: _rows_at_least(hub, 6), what="readings and comm loss stored")
            assert rows == [
                ("gas.h2s", 1.5, "good"),
                ("gas.lel", 2.0, "good"),
                ("gas.h2s", 3.5, "good"),
                ("gas.lel", 4.0, "good"),
                ("gas.h2s", None, "bad"),
                ("gas.lel", None, "bad"),
            ]
            # An alias never born is a message the hub cannot use: dead-lettered.
            async with sensor(mqtt_url) as edge:
                await edge.publish(
                    f"{node}/NBIRTH/edge-1", spb(0, {"name": "bdSeq", "long_value": 5}), qos=1
                )
                await edge.publish(f"{node}/NDATA/edge-1", spb(1, {"alias": 77, "double_value": 1.0}), qos=1)
            [(_, headers, _)] = await dead_letters(nats_url, 1)
            assert headers[REASON_HEADER] == "alias 77 was never born"
    finally:
        await forget_session(mqtt_url, client_id)


async def _rows_at_least(hub: Hub, count: int) -> list[tuple[str, float | None, str]] | None:
    rows = await quality_rows(hub)
    return rows if len(rows) >= count else None


async def test_sparkplug_births_outlive_a_hub_restart_and_data_sent_meanwhile_is_stored(
    nats_url: str, database_url: str, mqtt_url: str, names: tuple[str, str]
) -> None:
    prefix, client_id = names
    node = f"spBv1.0/{prefix}"
    base = int(RECENT.timestamp() * 1000)
    config = sparkplug_config(mqtt_url, prefix, client_id)
    try:
        async with bridged_hub(nats_url, database_url, config) as hub:
            await eventually(lambda: bridge_connected(hub), what="the bridge connected")
            async with sensor(mqtt_url) as edge:
                await edge.publish(f"{node}/NBIRTH/edge-1", spb(0, {"name": "bdSeq", "long_value": 1}), qos=1)
                birth = {"name": "Gas/H2S", "alias": 1, "datatype": SPARKPLUG_DOUBLE, "double_value": 1.0}
                data = spb(1, {**birth, "timestamp": base})
                await edge.publish(f"{node}/DBIRTH/edge-1/det-101", data, qos=1)
            await eventually(lambda: _rows_at_least(hub, 1), what="the birth value stored")

        # The hub is down: the node goes on sending by alias.
        async with sensor(mqtt_url) as edge:
            for n in range(2, 7):
                data = spb(n, {"alias": 1, "double_value": float(n), "timestamp": base + n * 1000})
                await edge.publish(f"{node}/DDATA/edge-1/det-101", data, qos=1)

        async with bridged_hub(nats_url, database_url, config) as hub:
            rows = await eventually(lambda: _rows_at_least(hub, 6), what="every value stored")
            assert [value for _, value, _ in rows] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        assert await dead_letters(nats_url, 1) == []
    finally:
        await forget_session(mqtt_url, client_id)
