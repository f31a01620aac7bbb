"""The OPC UA bridge against asyncua's server on loopback, with NATS and PostgreSQL: data changes
reach the store, a deadband keeps small changes out, a node the server does not know is reported
while the others are read, and a server restart is survived, its outage stored as comm loss."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import nats
import pytest
from asyncua import ua
from nats.js import JetStreamContext

from services.common.bus.deadletter import CONSUMER_HEADER, REASON_HEADER, SUBJECT_HEADER
from services.common.bus.streams import ensure_streams
from services.common.contracts import ObservationBatch
from services.common.contracts.quality import quality_name
from services.hub.bootstrap import Endpoints, Hub
from services.ingest.bridges.opcua_config import OpcuaConfig
from services.ingest.config import IngestConfig
from tests.builders import RECENT
from tests.conftest import REPO, eventually, hub_config, hub_streams
from tests.integration.opcua_plant import PLANT_URI, PlantServer, certificate, opcua_file

pytestmark = pytest.mark.integration

H2S = "ns=2;s=CDU1.GD101.H2S"
LEL = "ns=2;s=CDU1.GD102.LEL"
NODES = (
    f'          - {{node: "{H2S}", device: gd-cdu1-101, kind: gas.h2s}}\n'
    f'          - {{node: "{LEL}", device: gd-cdu1-102, kind: gas.lel, deadband: {{absolute: 0.5}}}}\n'
)
PEER = "ingest.opcua.dcs-cdu"


def at(seconds: float) -> datetime:
    return RECENT + timedelta(seconds=seconds)


@contextlib.asynccontextmanager
async def bridged_hub(nats_url: str, database_url: str, file: Path) -> AsyncIterator[Hub]:
    config = hub_config(ingest=IngestConfig(opcua=OpcuaConfig(file=str(file))))
    hub = Hub(config, REPO, Endpoints(nats_url, database_url))
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


@contextlib.asynccontextmanager
async def plant(initial: dict[str, float]) -> AsyncIterator[PlantServer]:
    server = PlantServer(initial, at=at(0))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def peers(hub: Hub) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(hub.http_url + "/readyz") as resp:
        body: dict[str, Any] = msgspec.json.decode(await resp.read())
        body["http_status"] = resp.status
        return body


async def peer_is(hub: Hub, prefix: str) -> dict[str, Any] | None:
    body = await peers(hub)
    return body if str(body.get("peers", {}).get(PEER, "")).startswith(prefix) else None


Row = tuple[str, float | None, str, str]


async def stored(hub: Hub, device: str) -> list[Row]:
    rows = await hub.pool.fetch(
        "SELECT kind, value, unit, quality FROM observations WHERE device = $1 ORDER BY stored, time", device
    )
    return [(r["kind"], r["value"], r["unit"], quality_name(r["quality"])) for r in rows]


def at_least(hub: Hub, device: str, count: int) -> Any:
    async def probe() -> list[Row] | None:
        rows = await stored(hub, device)
        return rows if len(rows) >= count else None

    return probe


async def test_data_changes_reach_the_store_and_a_deadband_keeps_small_changes_out(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    async with plant({H2S: 1.0, LEL: 10.0}) as server:
        file = opcua_file(tmp_path, server.endpoint, NODES)
        async with bridged_hub(nats_url, database_url, file) as hub:
            await eventually(lambda: peer_is(hub, "ok"), what="the server connected")
            await eventually(at_least(hub, "gd-cdu1-102", 1), what="the first values stored")
            for n, (h2s, lel) in enumerate([(1.2, 10.2), (1.4, 10.4), (2.0, 11.0)], start=1):
                await server.write(H2S, h2s, at(n))
                await server.write(LEL, lel, at(n))
                await eventually(at_least(hub, "gd-cdu1-101", 1 + n), what=f"H2S value {n} stored")
            await server.write(H2S, 3.0, at(4), status=ua.StatusCodes.BadSensorFailure)
            h2s = await eventually(at_least(hub, "gd-cdu1-101", 5), what="the bad value stored")
            lel = await stored(hub, "gd-cdu1-102")

    assert h2s == [
        ("gas.h2s", 1.0, "ppm", "good"),
        ("gas.h2s", 1.2, "ppm", "good"),
        ("gas.h2s", 1.4, "ppm", "good"),
        ("gas.h2s", 2.0, "ppm", "good"),
        ("gas.h2s", None, "ppm", "bad"),
    ]
    # 10.2 and 10.4 are within 0.5 of the last value reported (10.0): the server sends neither.
    assert lel == [("gas.lel", 10.0, "%LEL", "good"), ("gas.lel", 11.0, "%LEL", "good")]


async def test_an_unknown_node_is_reported_and_the_other_nodes_are_read(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    nodes = NODES + '          - {node: "ns=2;s=CDU1.NO.SUCH.TAG", device: gd-cdu1-103, kind: gas.lel}\n'
    async with plant({H2S: 1.0, LEL: 10.0}) as server:
        file = opcua_file(tmp_path, server.endpoint, nodes)
        async with bridged_hub(nats_url, database_url, file) as hub:
            body = await eventually(
                lambda: peer_is(hub, "1 node(s) not subscribed"), what="the refusal reported"
            )
            await server.write(H2S, 5.0, at(1))
            rows = await eventually(at_least(hub, "gd-cdu1-101", 2), what="the known node's values stored")
            async with aiohttp.ClientSession() as session, session.get(hub.http_url + "/metrics") as resp:
                exposition = await resp.text()

    assert body["http_status"] == 200
    assert body["status"] == "ready"
    assert "ns=2;s=CDU1.NO.SUCH.TAG (BadNodeIdUnknown)" in body["peers"][PEER]
    assert [value for _, value, _, _ in rows] == [1.0, 5.0]
    assert 'safetyhub_bridge_unsubscribed_nodes{bridge="opcua",peer="dcs-cdu"} 1.0' in exposition
    letters = await dead_letters(nats_url, 1)
    assert len(letters) == 1
    headers = letters[0]
    assert headers[CONSUMER_HEADER] == "bridge-opcua"
    assert headers[SUBJECT_HEADER] == "dcs-cdu/ns=2;s=CDU1.NO.SUCH.TAG"
    assert "BadNodeIdUnknown" in headers[REASON_HEADER]


async def dead_letters(nats_url: str, expected: int) -> list[dict[str, str]]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe("deadletter.bridge-opcua.>", durable=None, stream="DEADLETTER")
        found: list[dict[str, str]] = []
        with contextlib.suppress(nats.errors.TimeoutError):
            while len(found) < expected:
                found.extend(
                    dict(msg.headers or {}) for msg in await sub.fetch(expected - len(found), timeout=5)
                )
        return found
    finally:
        await nc.close()


async def test_a_server_restart_is_survived_and_its_outage_stored_as_comm_loss(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    server = PlantServer({H2S: 1.0, LEL: 10.0}, at=at(0))
    await server.start()
    try:
        file = opcua_file(tmp_path, server.endpoint, NODES)
        async with bridged_hub(nats_url, database_url, file) as hub:
            await eventually(at_least(hub, "gd-cdu1-101", 1), what="the first value stored")
            await server.stop()
            down = await eventually(lambda: peer_is(hub, "not connected"), what="the outage reported")
            h2s = await eventually(at_least(hub, "gd-cdu1-101", 2), what="comm loss of H2S stored")
            lel = await eventually(at_least(hub, "gd-cdu1-102", 2), what="comm loss of LEL stored")

            # The same server back on the same port, with the values it had: the re-subscription
            # sends them again, with their old timestamps, and they dedup.
            await server.start()
            await eventually(lambda: peer_is(hub, "ok"), what="the server reconnected", timeout=20)
            await server.write(H2S, 7.0, at(10))
            after = await eventually(at_least(hub, "gd-cdu1-101", 3), what="a value after the restart stored")
    finally:
        await server.stop()

    assert down["status"] == "ready"  # the rest of the hub serves
    assert h2s[1] == ("gas.h2s", None, "ppm", "bad")
    assert lel[1] == ("gas.lel", None, "%LEL", "bad")
    assert after == [
        ("gas.h2s", 1.0, "ppm", "good"),
        ("gas.h2s", None, "ppm", "bad"),
        ("gas.h2s", 7.0, "ppm", "good"),
    ]


async def test_a_server_down_at_start_up_is_reported_and_the_hub_serves(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    dead = PlantServer({}, at=at(0))  # never started: nothing listens on its port
    file = opcua_file(tmp_path, dead.endpoint, NODES)
    async with bridged_hub(nats_url, database_url, file) as hub:
        body = await eventually(lambda: peer_is(hub, "not connected"), what="the server reported down")
        h2s = await eventually(at_least(hub, "gd-cdu1-101", 1), what="comm loss stored")
        await asyncio.sleep(1.5)  # reconnects meanwhile (0.2 s, 0.4 s, 0.8 s): the same outage
        again = await stored(hub, "gd-cdu1-101")

    assert body["http_status"] == 200
    assert body["status"] == "ready"
    assert body["peers"][PEER].startswith(f"not connected to {dead.endpoint}")
    assert h2s == [("gas.h2s", None, "ppm", "bad")]
    assert again == h2s  # one comm loss per outage, not one per attempt


async def test_basic256sha256_with_a_password_connects_and_a_wrong_password_is_reported(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    server_cert = await certificate(tmp_path, "plant", PLANT_URI, server=True)
    hub_cert, hub_key = await certificate(tmp_path, "hub", "urn:safetyhub:ingest", server=False)
    (tmp_path / "password").write_text("s3cret\n", encoding="utf-8")
    server = PlantServer({H2S: 1.0}, at=at(0), secure=server_cert, users={"hub": "s3cret"})
    await server.start()
    security = (
        "    security: {policy: Basic256Sha256, mode: SignAndEncrypt,"
        f" certificate: {hub_cert.name}, private_key: {hub_key.name}}}\n"
    )
    lines = [
        "reconnect: {min_s: 0.2, max_s: 1.0}",
        "servers:",
        "  - name: dcs-cdu",
        f"    endpoint: {server.endpoint}",
        "    site: ulsan-refinery",
        "    username: hub",
        "    password_file: password",
        security.rstrip("\n"),
        "    subscriptions:",
        "      - publishing_interval_ms: 50",
        f'        nodes: [{{node: "{H2S}", device: gd-cdu1-101, kind: gas.h2s}}]',
        "  - name: intruder",  # the same server, a wrong password: other devices, to tell apart
        f"    endpoint: {server.endpoint}",
        "    site: ulsan-refinery",
        "    username: hub",
        "    password: guess",
        security.rstrip("\n"),
        "    subscriptions:",
        f'      - nodes: [{{node: "{H2S}", device: gd-cdu1-103, kind: gas.lel}}]',
    ]
    file = tmp_path / "opcua.yaml"
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        async with bridged_hub(nats_url, database_url, file) as hub:
            await eventually(lambda: peer_is(hub, "ok"), what="the secure session opened", timeout=20)
            await server.write(H2S, 4.0, at(1))
            rows = await eventually(at_least(hub, "gd-cdu1-101", 2), what="values over the secure channel")
            body = await peers(hub)
    finally:
        await server.stop()

    assert [value for _, value, _, _ in rows] == [1.0, 4.0]
    refused = body["peers"]["ingest.opcua.intruder"]
    assert refused.startswith(f"not connected to {server.endpoint}")
    assert "BadUserAccessDenied" in refused or "BadIdentityTokenRejected" in refused, refused
    assert body["status"] == "ready"


async def test_a_value_the_bus_does_not_take_is_held_and_published_when_it_can_be(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        async with plant({H2S: 1.0, LEL: 10.0}) as server:
            file = opcua_file(tmp_path, server.endpoint, NODES)
            async with bridged_hub(nats_url, database_url, file) as hub:
                await eventually(at_least(hub, "gd-cdu1-102", 1), what="the first values stored")
                await js.delete_stream("OBSERVATIONS")  # JetStream cannot store a reading now
                await server.write(H2S, 6.0, at(1))
                held = await eventually(lambda: peer_is(hub, "holding data changes"), what="the value held")

                # The store's consumer went with the stream: the stream itself is checked.
                await ensure_streams(js, hub_streams())
                stored_in_stream = await eventually(lambda: _in_stream(js), what="the held value published")
    finally:
        await nc.close()

    assert held["status"] == "ready"
    assert [(m.device, m.kind, m.value) for m in stored_in_stream] == [("gd-cdu1-101", "gas.h2s", 6.0)]


async def _in_stream(js: JetStreamContext) -> list[Any] | None:
    info = await js.stream_info("OBSERVATIONS")
    if not info.state.messages:
        return None
    sub = await js.pull_subscribe("obs.>", durable=None, stream="OBSERVATIONS")
    batch = ObservationBatch.FromString((await sub.fetch(1, timeout=5))[0].data)
    return list(batch.observations)
