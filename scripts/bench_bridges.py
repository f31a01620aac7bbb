#!/usr/bin/env python3
"""MQTT bridge benchmark: messages/s from a broker to stored observations, JSON and Sparkplug B,
against a bare aiomqtt subscriber receiving the same messages from the same broker.

Starts `safetyhub up` (embedded NATS and PostgreSQL) with the MQTT bridge on the broker named by
--broker (or SAFETYHUB_MQTT_URL; otherwise the hub's embedded broker), then:
1. baseline: a bare aiomqtt subscriber (QoS 1) receives --count messages a publisher sends;
2. JSON: --count readings (one per message, on `bench/<tenant>/<site>/<device>/<kind>`) until
   PostgreSQL holds every one; the rate is from the first publish to the last row's commit;
3. Sparkplug B: an edge node's births, then --count DDATA messages by alias, likewise;
   the publisher stays at most 500 messages ahead of what the subscriber (or the bridge) took,
   as a broker drops QoS 1 messages past a session's queue (Mosquitto: 1,000 by default);
4. latency: JSON readings offered at --rate messages/s for --seconds, each stamped with its
   publish time; p50 / p99 from publish to the row's commit;
5. OPC UA (scripts/bench_opcua.py): --opcua-count value changes written to an asyncua server
   with one node per (device, kind), received by a bare asyncua subscription (before the hub
   starts), then stored through the hub's OPC UA bridge (0 skips it).

Prints the figures, then one JSON line. Not a test: CI does not run it.
Usage: scripts/bench_bridges.py [--count 20000] [--rate 5000] [--seconds 5] [--opcua-count 20000]
                               [--broker mqtt://127.0.0.1:1883] [--protocol 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import aiomqtt
import asyncpg
import msgspec
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench_hub import start_hub
from scripts.bench_opcua import OpcuaBench
from services.common.contracts.sparkplug import SparkplugPayload
from services.common.sites.registry import SiteRegistry

TENANT = "ulsan-refining"
SITE = "ulsan-refinery"
GROUP = "bench"
EDGE = "edge-1"
DOUBLE = 10
Point = tuple[str, str, float]  # device, kind, top of its range


def _points() -> list[Point]:
    site = SiteRegistry.load([ROOT / "sites" / "ulsan-demo.yaml"]).site(SITE)
    assert site is not None
    return [(d.id, m.kind, m.range[1] if m.range else 100.0) for d in site.devices for m in d.measures]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _config(
    workdir: Path, broker: str | None, points: list[Point], opcua: Path | None, protocol: str
) -> Path:
    mqtt: dict[str, object] = {
        "client_id": f"safetyhub-bench-{uuid.uuid4().hex[:8]}",
        "max_in_flight": 5000,
        "topics": [{"pattern": "bench/{tenant}/{site}/{device}/{kind}", "value": "$.v", "time": "$.ts"}],
        "sparkplug": {
            "groups": [{"group": GROUP, "site": SITE, "metrics": {kind: kind for _, kind, _ in points}}]
        },
    }
    if protocol != "3.1.1":  # the default, named only when it differs
        mqtt["protocol"] = protocol
    if broker:
        mqtt["url"] = broker
    else:
        mqtt.update(embedded=True, broker={"port": _free_port()})
    ingest: dict[str, object] = {"mqtt": mqtt}
    if opcua is not None:
        ingest["opcua"] = {"file": str(opcua)}
    config = {"sites": [str(ROOT / "sites" / "ulsan-demo.yaml")], "ingest": ingest}
    path = workdir / "hub.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def _client(url: str, name: str, **options: object) -> aiomqtt.Client:
    parts = urlsplit(url)
    client = aiomqtt.Client(
        parts.hostname or "127.0.0.1",
        parts.port or 1883,
        username="bench",
        identifier=f"{name}-{uuid.uuid4().hex[:8]}",
        max_inflight_messages=1000,
        **options,  # type: ignore[arg-type]
    )
    client.pending_calls_threshold = 1 << 30  # many publishes in flight is the point here
    return client


Consumed = Callable[[], Awaitable[int]]
# Messages published and not yet taken by the subscriber at most: a broker keeps a bounded queue
# per session (Mosquitto: max_queued_messages 1000) and drops QoS 1 messages past it.
AHEAD = 500


async def _publish_all(
    client: aiomqtt.Client, messages: list[tuple[str, bytes]], consumed: Consumed, window: int = 100
) -> None:
    for start in range(0, len(messages), window):
        while start - await consumed() > AHEAD:  # noqa: ASYNC110 - polls another process
            await asyncio.sleep(0.02)  # each poll renders the hub's metrics: not too often
        await asyncio.gather(*(client.publish(t, p, qos=1) for t, p in messages[start : start + window]))


async def _bridge_received(http_url: str, metric: str = "safetyhub_bridge_received_total") -> int:
    """Messages the hub's bridge has taken from the broker so far (its metrics); with
    `safetyhub_bridge_published_total`, the readings JetStream has accepted from it."""
    async with aiohttp.ClientSession() as session, session.get(http_url + "/metrics") as resp:
        text = await resp.text()
    return int(
        sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(metric))
    )


PUBLISHED = "safetyhub_bridge_published_total"


def _json_messages(points: list[Point], run: str, count: int) -> list[tuple[str, bytes]]:
    out = []
    for n in range(count):
        device, kind, top = points[n % len(points)]
        body = {"v": round((n % 97) / 97 * top, 3), "ts": datetime.now(UTC).isoformat(), "id": f"{run}-{n}"}
        out.append((f"bench/{TENANT}/{SITE}/{device}/{kind}", msgspec.json.encode(body)))
    return out


def _spb(seq: int, metrics: list[dict[str, object]]) -> bytes:
    payload = SparkplugPayload(timestamp=int(time.time() * 1000), seq=seq % 256)
    for fields in metrics:
        payload.metrics.add(**fields)  # type: ignore[arg-type]
    return payload.SerializeToString()


Messages = list[tuple[str, bytes]]


def _sparkplug_messages(points: list[Point], count: int) -> tuple[Messages, Messages]:
    """The births (node, then each device) and `count` DDATA messages by alias."""
    node = f"spBv1.0/{GROUP}"
    births = [(f"{node}/NBIRTH/{EDGE}", _spb(0, [{"name": "bdSeq", "datatype": 8, "long_value": 0}]))]
    aliases: dict[tuple[str, str], int] = {}
    by_device: dict[str, list[dict[str, object]]] = {}
    for device, kind, _ in points:
        aliases[(device, kind)] = alias = len(aliases) + 1
        metric = {"name": kind, "alias": alias, "datatype": DOUBLE, "double_value": 0.0}
        by_device.setdefault(device, []).append(metric)
    seq = 0
    for device, metrics in by_device.items():
        seq += 1
        births.append((f"{node}/DBIRTH/{EDGE}/{device}", _spb(seq, metrics)))
    base = int(time.time() * 1000) + 1000  # after the births, so no reading repeats a birth's
    data = []
    for n in range(count):
        seq += 1
        device, kind, top = points[n % len(points)]
        value = (n % 89) / 89 * top
        metric = {"alias": aliases[(device, kind)], "double_value": value, "timestamp": base + n}
        data.append((f"{node}/DDATA/{EDGE}/{device}", _spb(seq, [metric])))
    return births, data


async def _stored(conn: asyncpg.Connection) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM observations")
    return count


async def _until_stored(conn: asyncpg.Connection, expected: int, deadline_s: float = 120.0) -> float:
    deadline = time.monotonic() + deadline_s
    while (got := await _stored(conn)) < expected:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {got} of {expected} observations stored within {deadline_s} s")
        await asyncio.sleep(0.02)
    return time.monotonic()


async def _baseline(url: str, points: list[Point], count: int) -> float:
    received = 0
    done = asyncio.Event()
    async with _client(url, "bench-bare", clean_session=True) as sub:
        await sub.subscribe("bare/#", qos=1)

        async def read() -> None:
            nonlocal received
            async for _ in sub.messages:
                received += 1
                if received >= count:
                    done.set()
                    return

        reader = asyncio.create_task(read())
        messages = [(f"bare/{t}", p) for t, p in _json_messages(points, "bare", count)]

        async def taken() -> int:
            return received

        async with _client(url, "bench-pub") as pub:
            started = time.monotonic()
            await _publish_all(pub, messages, taken)
            await asyncio.wait_for(done.wait(), 120)
        elapsed = time.monotonic() - started
        reader.cancel()
    return count / elapsed


def _cpu_s(hub: psutil.Process) -> float:
    """CPU seconds the hub (with its embedded NATS and PostgreSQL) has used so far."""
    total = 0.0
    for proc in [hub, *hub.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


async def _phase(
    url: str,
    http_url: str,
    conn: asyncpg.Connection,
    messages: Messages,
    expected: int,
    *,
    hub: psutil.Process,
) -> tuple[float, float, float]:
    """Messages/s from the first publish to the last row stored; to the bridge's last reading
    accepted by JetStream (the bridge alone, before the store and the alarm engine); and the
    hub's CPU ms per message (its own process and its children's: NATS and PostgreSQL)."""
    before = await _stored(conn)
    offset = await _bridge_received(http_url)
    published = await _bridge_received(http_url, PUBLISHED)

    async def taken() -> int:
        return await _bridge_received(http_url) - offset

    cpu = _cpu_s(hub)
    async with _client(url, "bench-pub") as pub:
        started = time.monotonic()
        await _publish_all(pub, messages, taken)
    while await _bridge_received(http_url, PUBLISHED) - published < expected:  # noqa: ASYNC110
        await asyncio.sleep(0.02)  # polls another process
    bridged = time.monotonic()
    finished = await _until_stored(conn, before + expected)
    rates = expected / (finished - started), expected / (bridged - started)
    return *rates, (_cpu_s(hub) - cpu) * 1000 / expected


async def _paced(
    url: str, conn: asyncpg.Connection, points: list[Point], args: argparse.Namespace, run: str
) -> tuple[float, float, int, int]:
    before = await _stored(conn)
    rate = args.rate
    total = int(rate * args.seconds)
    tick = 0.01  # publish in 10 ms slices: rate / 100 messages each
    per_tick = max(1, int(rate * tick))

    async def unbounded() -> int:
        return 1 << 62  # paced: the rate bounds what is ahead

    async with _client(url, "bench-paced") as pub:
        started = time.monotonic()
        sent = 0
        while sent < total:
            batch = _json_messages(points, f"{run}-{sent}", min(per_tick, total - sent))
            await _publish_all(pub, batch, unbounded)
            sent += len(batch)
            ahead = started + sent / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
    # Not every message may arrive: past its in-flight window a broker queues a bounded number for
    # a slow session and drops the rest (Mosquitto: 20 in flight, 1,000 queued by default). Wait
    # until the count stops growing, and report what is missing.
    last, still = -1, time.monotonic()
    while (got := await _stored(conn) - before) < total and time.monotonic() - still < 10.0:
        if got != last:
            last, still = got, time.monotonic()
        await asyncio.sleep(0.2)
    row = await conn.fetchrow(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM stored - time)) AS p50,"
        " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM stored - time)) AS p99"
        " FROM observations WHERE id LIKE $1",
        f"{run}-%",
    )
    return float(row["p50"]) * 1000, float(row["p99"]) * 1000, total, max(got, 0)


def _report(figures: dict[str, object], args: argparse.Namespace) -> None:
    print(f"bare aiomqtt subscriber: {figures['bare_subscriber_per_s']} messages/s")
    print(
        f"JSON, broker -> stored: {figures['json_stored_per_s']} messages/s"
        f" ({figures['json_ratio_to_bare']} of bare)"
    )
    print(
        f"Sparkplug B, broker -> stored: {figures['sparkplug_stored_per_s']} messages/s"
        f" ({figures['sparkplug_ratio_to_bare']} of bare)"
    )
    print(
        f"broker -> accepted by JetStream (the bridge alone): JSON {figures['json_bridged_per_s']}"
        f" messages/s ({figures['json_bridged_ratio_to_bare']} of bare), Sparkplug B"
        f" {figures['sparkplug_bridged_per_s']} ({figures['sparkplug_bridged_ratio_to_bare']})"
    )
    print(
        f"hub CPU per message (hub, NATS, PostgreSQL): JSON {figures['json_cpu_ms_per_msg']} ms,"
        f" Sparkplug B {figures['sparkplug_cpu_ms_per_msg']} ms"
    )
    print(
        f"at {args.rate:g} messages/s: {figures['paced_stored']} of {figures['paced_messages']} stored;"
        f" publish -> stored p50 {figures['paced_p50_ms']} ms, p99 {figures['paced_p99_ms']} ms"
    )
    if args.opcua_count > 0:
        print(
            f"OPC UA: a bare asyncua subscription receives {figures['opcua_bare_client_per_s']} values/s;"
            f" server -> stored {figures['opcua_stored_per_s']} values/s"
            f" ({figures['opcua_ratio_to_bare']} of bare),"
            f" {figures['opcua_stored']} of {args.opcua_count} stored"
        )
    print(f"hub peak RSS {figures['peak_rss_mb']} MB")


async def _opcua_server(points: list[Point], count: int) -> tuple[OpcuaBench | None, float]:
    """The OPC UA server, started, and what a bare client receives from it (before the hub)."""
    if count <= 0:
        return None, 0.0
    opcua = OpcuaBench(SITE, points)
    await opcua.start()
    return opcua, await opcua.bare(count)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=5_000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--broker", default=os.environ.get("SAFETYHUB_MQTT_URL"))
    parser.add_argument("--opcua-count", type=int, default=20_000)
    parser.add_argument(
        "--protocol",
        choices=("3.1.1", "5"),
        help="the bridge's MQTT version (default: 5 with --broker, 3.1.1 with the embedded broker)",
    )
    args = parser.parse_args()
    args.protocol = args.protocol or ("5" if args.broker else "3.1.1")
    return args


async def main() -> None:
    args = _args()
    points = _points()
    workdir = Path(tempfile.mkdtemp(prefix="safetyhub-bench-"))
    os.chmod(workdir, 0o755)  # the embedded PostgreSQL runs unprivileged when we are root
    opcua, opcua_bare = await _opcua_server(points, args.opcua_count)
    config = _config(
        workdir, args.broker, points, opcua.file(workdir) if opcua else None, args.protocol
    )
    url = (
        args.broker
        or f"mqtt://127.0.0.1:{json.loads(config.read_text())['ingest']['mqtt']['broker']['port']}"
    )
    proc, info = await start_hub(workdir, config=config)
    hub = psutil.Process(proc.pid)
    peak_rss = 0
    sampling = True

    async def sample_rss() -> None:
        nonlocal peak_rss
        while sampling:
            with contextlib.suppress(psutil.Error):
                peak_rss = max(peak_rss, hub.memory_info().rss)
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample_rss())
    conn = await asyncpg.connect(info["database_url"])
    try:
        await asyncio.sleep(2.0)  # the bridge connects and subscribes
        bare = await _baseline(url, points, args.count)
        run = f"bench{int(time.time())}"
        http_url = info["http_url"]
        json_rate, json_bridged, json_cpu = await _phase(
            url, http_url, conn, _json_messages(points, run, args.count), args.count, hub=hub
        )
        births, data = _sparkplug_messages(points, args.count)
        await _phase(url, http_url, conn, births, len(points), hub=hub)
        sparkplug_rate, sparkplug_bridged, sparkplug_cpu = await _phase(
            url, http_url, conn, data, args.count, hub=hub
        )
        p50, p99, paced, paced_stored = await _paced(url, conn, points, args, f"{run}p")
        opcua_rate, opcua_stored = await opcua.stored(conn, args.opcua_count) if opcua else (0.0, 0)
    finally:
        sampling = False
        await sampler
        await conn.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)
        if opcua is not None:
            await opcua.stop()

    figures = {
        "broker": "external" if args.broker else "embedded",
        "protocol": args.protocol,
        "messages": args.count,
        "bare_subscriber_per_s": round(bare),
        "json_stored_per_s": round(json_rate),
        "sparkplug_stored_per_s": round(sparkplug_rate),
        "json_ratio_to_bare": round(json_rate / bare, 2),
        "sparkplug_ratio_to_bare": round(sparkplug_rate / bare, 2),
        "json_bridged_per_s": round(json_bridged),
        "sparkplug_bridged_per_s": round(sparkplug_bridged),
        "json_bridged_ratio_to_bare": round(json_bridged / bare, 2),
        "sparkplug_bridged_ratio_to_bare": round(sparkplug_bridged / bare, 2),
        "json_cpu_ms_per_msg": round(json_cpu, 3),
        "sparkplug_cpu_ms_per_msg": round(sparkplug_cpu, 3),
        "paced_rate_per_s": round(args.rate),
        "paced_messages": paced,
        "paced_stored": paced_stored,
        "paced_missing": paced - paced_stored,
        "paced_p50_ms": round(p50, 1),
        "paced_p99_ms": round(p99, 1),
        "opcua_values": args.opcua_count,
        "opcua_bare_client_per_s": round(opcua_bare),
        "opcua_stored_per_s": round(opcua_rate),
        "opcua_stored": opcua_stored,
        "opcua_ratio_to_bare": round(opcua_rate / opcua_bare, 2) if opcua_bare else 0.0,
        "peak_rss_mb": round(peak_rss / 1024 / 1024, 1),
    }
    _report(figures, args)
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
