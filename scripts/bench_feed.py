#!/usr/bin/env python3
"""City feed benchmark: incidents/s projected to FEED and upserted as NGSI-LD Alerts with the
whole hub running, and the latency from an incident opened (on INCIDENTS) to its FEED event.

Starts `safetyhub up` (every service; embedded NATS and PostgreSQL) with the demo sites plus
generated plants of 8 gas detectors each (--incidents detectors in all), each detector in a zone
of its own 2 km from the next (so each one's alarm opens an incident of its own, and no plant
floods), every plant under a `redacted` sharing policy (config)
and an NGSI-LD context broker: an aiohttp server in this process that records each upsert. Then
posts one H2S reading past the high-high set-point per detector, --batch readings per POST, at
--rate readings/s, and times with core NATS subscriptions each incident's `opened` change on
INCIDENTS and its FEED event, and at the broker each Alert's first upsert. Throughputs are
counted from the first to the last event seen. Prints the figures, then one JSON line. Not a test.

--flood: every detector in one plant, all their readings at once (one POST per --batch, no
pacing): the site floods, every non-safety alarm joins the flood incident and each of its changes
carries the whole incident. Under --policy (redacted or counts), the feed's rate is counted from
the `feed-incidents` durable's ack floor (polled every 20 ms) as it passes each INCIDENTS message,
and each change's latency from its store time on INCIDENTS to that moment (a `counts` policy
sends no per-change event, so FEED events cannot time it).
Usage: scripts/bench_feed.py [--incidents 2000] [--rate 400] [--batch 20]
       scripts/bench_feed.py --flood --incidents 500 --policy redacted
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import msgspec
import nats
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench_hub import create_key, start_hub
from services.common.contracts import IncidentChange

TENANT = "ulsan-refining"
SITE = "bench-feed"
LAT0, LON0 = 35.30, 129.20
STEP = 0.02  # degrees between detectors: about 2 km
PER_SITE = 8


def _site_name(n: int) -> str:
    return f"{SITE}-{n // PER_SITE:03d}"


FLOOD = False  # set by --flood: every detector in plant 000


def _site_of(n: int) -> str:
    return _site_name(0) if FLOOD else _site_name(n)


def _site_file(path: Path, detectors: int) -> None:
    """Plants of PER_SITE detectors each: fewer activations than a site's flood threshold, so
    each incident stays one of its own (a flood would fold them into one)."""
    sites: dict[str, tuple[list[str], list[str]]] = {}
    for n in range(detectors):
        lat = LAT0 + (n // 50) * STEP
        lon = LON0 + (n % 50) * STEP
        corners = [(lat - 0.001, lon - 0.001), (lat + 0.001, lon - 0.001), (lat + 0.001, lon + 0.001)]
        polygon = ", ".join(f"[{a:.4f}, {b:.4f}]" for a, b in [*corners, (lat - 0.001, lon + 0.001)])
        zones, devices = sites.setdefault(_site_of(n), ([], []))
        zones.append(f"\n      - {{id: zone-{n:05d}, name: 'Zone {n}', hazard: toxic, polygon: [{polygon}]}}")
        devices.append(
            f"\n      - {{id: gd-f{n:05d}, zone: zone-{n:05d}, type: gas_detector,"
            f" position: {{lat: {lat:.4f}, lon: {lon:.4f}}},"
            " measures: [{kind: gas.h2s, unit: ppm, range: [0, 100]}]}"
        )
    body = "version: 1\nsites:"
    for site, (zones, devices) in sites.items():
        body += f"""
  - id: {site}
    tenant: {TENANT}
    name: "Feed benchmark plant {site}"
    kind: plant
    timezone: Asia/Seoul
    location: {{lat: {LAT0}, lon: {LON0}}}
    zones:{"".join(zones)}
    devices:{"".join(devices)}"""
    path.write_text(body + "\n")


def _config(workdir: Path, broker_url: str, detectors: int, policy: str = "redacted") -> Path:
    config = workdir / "hub.yaml"
    sites = [str(ROOT / "sites" / "ulsan-demo.yaml"), str(workdir / "bench-site.yaml")]
    rules = [str(ROOT / "sites" / "alarms" / "ulsan-demo.yaml")]
    names = sorted({_site_of(n) for n in range(detectors)})
    feed = {
        "policies": [{"tenant": TENANT, "site": name, "level": policy} for name in names],
        "ngsi": {"url": broker_url, "poll_ms": 50},
    }
    body = {"sites": sites, "alarms": {"rules": rules}, "feed": feed, "log_level": "warning"}
    config.write_text(json.dumps(body))
    return config


class Broker:
    """A context broker that takes every upsert and records when it first saw each entity."""

    def __init__(self) -> None:
        self.first_seen: dict[str, float] = {}
        self.requests = 0
        self.progress = asyncio.Event()

    async def upsert(self, request: web.Request) -> web.Response:
        now = time.time()
        self.requests += 1
        for entity in json.loads(await request.read()):
            self.first_seen.setdefault(entity["id"].rsplit(":", 1)[1], now)
        self.progress.set()
        return web.Response(status=204)


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[max(0, int(len(ordered) * q) - 1)] if q < 1 else ordered[-1]


def _rate(times: list[float]) -> float:
    return (len(times) - 1) / (max(times) - min(times)) if len(times) > 1 and max(times) > min(times) else 0.0


async def _run(info: dict[str, str], key: str, broker: Broker, args: argparse.Namespace) -> dict[str, float]:
    nc = await nats.connect(info["nats_url"])
    opened: dict[str, float] = {}
    shared: dict[str, float] = {}

    async def on_incident(msg: nats.aio.msg.Msg) -> None:
        if (msg.headers or {}).get("ce-type") == "org.safetyhub.incident.opened.v1":
            opened.setdefault(IncidentChange.FromString(msg.data).incident_id, time.time())

    async def on_feed(msg: nats.aio.msg.Msg) -> None:
        data = json.loads(msg.data)["data"]
        if data.get("change") == "opened":
            shared.setdefault(data["id"], time.time())

    await nc.subscribe(f"incident.{TENANT}.>", cb=on_incident)
    await nc.subscribe(f"feed.{TENANT}.*.incident", cb=on_feed)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    posts = (args.incidents + args.batch - 1) // args.batch
    interval = args.batch / args.rate
    async with aiohttp.ClientSession() as session:

        async def send(number: int) -> None:
            now = datetime.now(UTC).isoformat()
            items = [
                {"id": f"feed-{n}", "site": _site_of(n), "device": f"gd-f{n:05d}", "kind": "gas.h2s",
                 "unit": "ppm", "value": 30.0, "time": now}
                for n in range(number * args.batch, min(args.incidents, (number + 1) * args.batch))
            ]  # fmt: skip
            async with session.post(
                info["http_url"] + "/v1/observations", data=msgspec.json.encode(items), headers=headers
            ) as resp:
                await resp.read()

        started = time.monotonic()
        tasks = []
        for number in range(posts):
            await asyncio.sleep(max(0.0, started + number * interval - time.monotonic()))
            tasks.append(asyncio.create_task(send(number)))
        await asyncio.gather(*tasks)
    deadline = time.monotonic() + args.drain_s
    # Until every incident opened is on FEED and at the broker (or the deadline).
    while time.monotonic() < deadline and (
        len(opened) < args.incidents
        or not set(opened) <= set(shared)
        or not set(opened) <= set(broker.first_seen)
    ):
        broker.progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(broker.progress.wait(), 0.5)
    await nc.close()
    latencies = [(shared[i] - t) * 1000 for i, t in opened.items() if i in shared]
    upsert_latencies = [
        (broker.first_seen[i] - t) * 1000 for i, t in opened.items() if i in broker.first_seen
    ]
    return {
        "opened": len(opened),
        "shared": len(shared),
        "upserted": len(broker.first_seen),
        "upsert_requests": broker.requests,
        "opened_per_s": _rate(list(opened.values())),
        "feed_per_s": _rate(list(shared.values())),
        "upserted_per_s": _rate(list(broker.first_seen.values())),
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": _p(latencies, 0.99),
        "upsert_p99_ms": _p(upsert_latencies, 0.99),
    }


async def _timed(
    js: nats.js.JetStreamContext, floors: list[tuple[float, int]], last_seq: int
) -> tuple[list[tuple[int, float]], list[float], list[float]]:
    """Each change on INCIDENTS (its sequence, its store time), when the feed's ack floor passed
    it, and that delay in ms."""
    # Each change's store time on INCIDENTS, read back in order.
    stored: list[tuple[int, float]] = []
    sub = await js.subscribe("incident.>", ordered_consumer=True)
    while len(stored) < last_seq:
        try:
            msg = await sub.next_msg(timeout=2.0)
        except TimeoutError:
            break
        stored.append((msg.metadata.sequence.stream, msg.metadata.timestamp.timestamp()))
    acked: list[float] = []
    latencies: list[float] = []
    index = 0
    for seq, at in stored:
        while index < len(floors) and floors[index][1] < seq:
            index += 1
        if index < len(floors):
            acked.append(floors[index][0])
            latencies.append((floors[index][0] - at) * 1000)
    return stored, acked, latencies


async def _flood(info: dict[str, str], key: str, args: argparse.Namespace) -> dict[str, float]:
    """Every reading at once; the feed timed by its durable's ack floor over INCIDENTS."""
    nc = await nats.connect(info["nats_url"])
    js = nc.jetstream()
    feed_events = 0

    async def on_feed(msg: nats.aio.msg.Msg) -> None:
        nonlocal feed_events
        feed_events += 1

    await nc.subscribe(f"feed.{TENANT}.>", cb=on_feed)
    floors: list[tuple[float, int]] = []  # (when, ack floor's stream sequence)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    now = datetime.now(UTC).isoformat()
    async with aiohttp.ClientSession() as session:

        async def send(number: int) -> None:
            items = [
                {"id": f"flood-{n}", "site": _site_of(n), "device": f"gd-f{n:05d}", "kind": "gas.h2s",
                 "unit": "ppm", "value": 30.0, "time": now}
                for n in range(number * args.batch, min(args.incidents, (number + 1) * args.batch))
            ]  # fmt: skip
            async with session.post(
                info["http_url"] + "/v1/observations", data=msgspec.json.encode(items), headers=headers
            ) as resp:
                await resp.read()

        posts = (args.incidents + args.batch - 1) // args.batch
        await asyncio.gather(*(send(number) for number in range(posts)))
    # Until the feed has acked every change INCIDENTS holds and none came for --quiet-s.
    deadline = time.monotonic() + args.drain_s
    last_change = time.monotonic()
    last_seq = 0
    while time.monotonic() < deadline:
        stream = (await js.stream_info("INCIDENTS")).state.last_seq
        try:
            floor = (await js.consumer_info("INCIDENTS", "feed-incidents")).ack_floor.stream_seq
        except nats.js.errors.NotFoundError:
            floor = 0
        floors.append((time.time(), floor))
        if stream != last_seq:
            last_seq, last_change = stream, time.monotonic()
        if stream and floor >= stream and time.monotonic() - last_change > args.quiet_s:
            alarms = await js.consumer_info("ALARMS", "feed-alarms")
            if not alarms.num_pending and not alarms.num_ack_pending:
                break
        await asyncio.sleep(0.02)
    seen = -1
    while seen != feed_events:  # the relay publishes just after each commit
        seen = feed_events
        await asyncio.sleep(1.0)
    stored, acked, latencies = await _timed(js, floors, last_seq)
    await nc.close()
    return {
        "changes": len(stored),
        "acked": len(acked),
        "feed_events": feed_events,
        "changes_per_s": _rate(acked),
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": _p(latencies, 0.99),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--incidents", type=int, default=2000, help="detectors, one incident each")
    parser.add_argument("--rate", type=float, default=400.0, help="offered crossing readings/s")
    parser.add_argument("--batch", type=int, default=20, help="readings per POST")
    parser.add_argument("--drain-s", type=float, default=120.0, help="how long to wait for the last events")
    parser.add_argument("--flood", action="store_true", help="every detector in one plant, all at once")
    parser.add_argument("--policy", choices=["redacted", "counts"], default="redacted", help="with --flood")
    parser.add_argument(
        "--quiet-s", type=float, default=5.0, help="--flood: done once no change came this long"
    )
    args = parser.parse_args()
    global FLOOD
    FLOOD = args.flood

    broker = Broker()
    app = web.Application()
    app.router.add_post("/ngsi-ld/v1/entityOperations/upsert", broker.upsert)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    broker_url = f"http://127.0.0.1:{runner.addresses[0][1]}"

    workdir = Path(tempfile.mkdtemp(prefix="safetyhub-bench-feed-"))
    os.chmod(workdir, 0o755)  # the embedded PostgreSQL runs unprivileged when we are root
    _site_file(workdir / "bench-site.yaml", args.incidents)
    config = _config(workdir, broker_url, args.incidents, args.policy)
    proc, info = await start_hub(workdir, config=config, timeout_s=180)
    try:
        gateway = await asyncio.to_thread(create_key, workdir, TENANT, "gateway")
        if args.flood:
            flood = await _flood(info, gateway, args)
        else:
            result = await _run(info, gateway, broker, args)
    finally:
        proc.send_signal(signal.SIGTERM)
        # In a thread: the broker in this loop answers the hub's last upserts while it stops.
        await asyncio.to_thread(proc.wait, 60)
        shutil.rmtree(workdir, ignore_errors=True)
        await runner.cleanup()

    if args.flood:
        figures = {
            "flood_detectors": args.incidents,
            "policy": args.policy,
            "incident_changes": flood["changes"],
            "changes_acked_by_feed": flood["acked"],
            "feed_events": flood["feed_events"],
            "feed_changes_per_s": round(flood["changes_per_s"], 1),
            "change_to_feed_ack_p50_ms": round(flood["p50_ms"], 1),
            "change_to_feed_ack_p99_ms": round(flood["p99_ms"], 1),
        }
        print(
            f"flood of {args.incidents} detectors at one plant under {args.policy}: "
            f"{flood['changes']} incident changes, {flood['acked']} consumed by the feed at "
            f"{figures['feed_changes_per_s']}/s; {flood['feed_events']} FEED events (incidents, alarms)"
        )
        print(
            f"change stored on INCIDENTS -> acked by the feed p50 {figures['change_to_feed_ack_p50_ms']} ms, "
            f"p99 {figures['change_to_feed_ack_p99_ms']} ms"
        )
        print(json.dumps(figures))
        return
    figures = {
        "incidents_offered": args.incidents,
        "offered_readings_per_s": args.rate,
        "incidents_opened": result["opened"],
        "incidents_on_feed": result["shared"],
        "alerts_upserted": result["upserted"],
        "upsert_requests": result["upsert_requests"],
        "opened_per_s": round(result["opened_per_s"], 1),
        "feed_per_s": round(result["feed_per_s"], 1),
        "upserted_per_s": round(result["upserted_per_s"], 1),
        "opened_to_feed_p50_ms": round(result["p50_ms"], 1),
        "opened_to_feed_p99_ms": round(result["p99_ms"], 1),
        "opened_to_upsert_p99_ms": round(result["upsert_p99_ms"], 1),
    }
    print(
        f"{figures['incidents_opened']} incidents opened at {figures['opened_per_s']}/s; "
        f"{figures['incidents_on_feed']} on FEED at {figures['feed_per_s']}/s, "
        f"{figures['alerts_upserted']} Alerts upserted at {figures['upserted_per_s']}/s "
        f"in {figures['upsert_requests']} requests"
    )
    print(
        f"incident opened -> FEED event p50 {figures['opened_to_feed_p50_ms']} ms, "
        f"p99 {figures['opened_to_feed_p99_ms']} ms; -> Alert upserted p99 "
        f"{figures['opened_to_upsert_p99_ms']} ms"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
