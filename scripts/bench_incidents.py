#!/usr/bin/env python3
"""Incidents benchmark: the latency from a reading accepted to the incident it opens published on
INCIDENTS, under load; and `GET /v1/incidents` with 100,000 stored incidents.

Starts `safetyhub up --workers N` (every service; embedded NATS and PostgreSQL) with the demo
sites plus a generated site of --detectors gas detectors, each in a zone of its own 2 km from the
next (so each one's alarm is an incident of its own), then:
1. latency: --rate observations/s offered for --seconds, all normal readings but one H2S reading
   past the high-high set-point per detector, spread over the run; a core NATS subscription on
   `incident.>` times each `opened` change from the 202 of the POST that carried the reading (the
   incident carries the reading's id as its correlation id);
2. list: --incidents incidents are written to the incidents table (a plausible mix of types,
   statuses and severities over the site's area), then --requests sequential requests each of
   `GET /v1/incidents?limit=50` (plain), with status, severity and type filters (filtered), and
   `near=` with a 5 km radius (near), each timed at the client, once the hub's consumers have
   caught up with the first part's load (so the list, not that backlog, is timed).

The latency is timed twice: to the `opened` change on INCIDENTS (core NATS, as escalation would
see it) and to the `incident.opened` event on the live stream (`GET /v1/stream`, what a phone
sees), read by --sse-clients clients at once (each incident timed at each client; the stream
maps the incident id back to the reading through the INCIDENTS change's correlation id).
Prints the figures, then one JSON line. Not a test.
Usage: scripts/bench_incidents.py [--seconds 20] [--rate 5000] [--detectors 100] [--incidents 100000]
                                  [--sse-clients 20]
"""

from __future__ import annotations

import argparse
import asyncio
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
import asyncpg
import msgspec
import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench_hub import cpu_spent, create_key, start_hub, tree_cpu
from services.common.contracts import AlarmTransition, IncidentChange

SSE_PATH = "/v1/stream?type=gas_release"

TENANT = "ulsan-refining"
SITE = "bench-incidents"
LAT0, LON0 = 35.30, 129.20
STEP = 0.02  # degrees of latitude between detectors: about 2.2 km


def _site_file(path: Path, detectors: int) -> None:
    zones, devices = [], []
    for n in range(detectors):
        lat = LAT0 + (n // 10) * STEP
        lon = LON0 + (n % 10) * STEP
        corners = [(lat - 0.001, lon - 0.001), (lat + 0.001, lon - 0.001), (lat + 0.001, lon + 0.001)]
        polygon = ", ".join(f"[{a:.4f}, {b:.4f}]" for a, b in [*corners, (lat - 0.001, lon + 0.001)])
        zones.append(
            f"""
      - id: zone-{n:04d}
        name: "Zone {n}"
        hazard: toxic
        polygon: [{polygon}]"""
        )
        devices.append(
            f"""
      - id: gd-i{n:04d}
        zone: zone-{n:04d}
        type: gas_detector
        position: {{lat: {lat:.4f}, lon: {lon:.4f}}}
        measures:
          - {{kind: gas.h2s, unit: ppm, range: [0, 100]}}"""
        )
    path.write_text(
        f"""version: 1
sites:
  - id: {SITE}
    tenant: {TENANT}
    name: "Incident benchmark plant"
    kind: plant
    timezone: Asia/Seoul
    location: {{lat: {LAT0}, lon: {LON0}}}
    zones:{"".join(zones)}
    devices:{"".join(devices)}
"""
    )


def _config(workdir: Path) -> Path:
    config = workdir / "hub.yaml"
    sites = [str(ROOT / "sites" / "ulsan-demo.yaml"), str(workdir / "bench-site.yaml")]
    rules = [str(ROOT / "sites" / "alarms" / "ulsan-demo.yaml")]
    config.write_text(json.dumps({"sites": sites, "alarms": {"rules": rules}, "log_level": "warning"}))
    return config


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    if not ordered:
        return float("nan"), float("nan")
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.99) - 1)]


# ---------------------------------------------------------------- 1. reading -> incident


class SseReaders:
    """--sse-clients clients of the live stream; each notes when each `incident.opened` arrived."""

    def __init__(self, url: str, key: str, clients: int) -> None:
        self._url, self._key = url, key
        self.seen: list[dict[str, float]] = [{} for _ in range(clients)]
        self._ready = [asyncio.Event() for _ in range(clients)]
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None), connector=aiohttp.TCPConnector(limit=0)
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        pairs = zip(self.seen, self._ready, strict=True)
        self._tasks = [asyncio.create_task(self._read(seen, ready)) for seen, ready in pairs]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in self._ready)), timeout=30)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()

    async def _read(self, seen: dict[str, float], ready: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {self._key}"}
        async with self._session.get(self._url + SSE_PATH, headers=headers) as resp:
            if resp.status != 200:
                raise SystemExit(f"GET {SSE_PATH}: {resp.status} {await resp.text()}")
            event = ""
            async for raw in resp.content:
                line = raw.rstrip(b"\n")
                if line.startswith(b"id:"):
                    ready.set()  # the opening id: the client has joined the live feed
                elif line.startswith(b"event: "):
                    event = line[7:].decode()
                elif line.startswith(b"data: ") and event == "incident.opened":
                    now = time.time()
                    seen.setdefault(msgspec.json.decode(line[6:])["incident"]["id"], now)

    def timings(self, since: dict[str, float], incident_of: dict[str, str]) -> list[float]:
        """Milliseconds from `since[reading]` to the reading's incident on each client's stream."""
        return [
            (seen[incident_of[i]] - t) * 1000
            for seen in self.seen
            for i, t in since.items()
            if i in incident_of and incident_of[i] in seen
        ]


class BusClock:
    """When each reading's first alarm transition and its incident's `opened` were on the bus
    (core NATS subscriptions: what a consumer of ALARMS or INCIDENTS would see)."""

    def __init__(self) -> None:
        self.raised: dict[str, float] = {}  # the reading's id -> its first alarm transition
        self.opened: dict[str, float] = {}  # the reading's id -> its incident opened
        self.incident_of: dict[str, str] = {}  # the reading's id -> its incident's id
        self._nc: NatsClient | None = None

    async def start(self, nats_url: str) -> None:
        self._nc = await nats.connect(nats_url)
        await self._nc.subscribe("incident.>", cb=self._on_change)
        await self._nc.subscribe("alarm.>", cb=self._on_alarm)

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()

    async def _on_change(self, msg: Msg) -> None:
        if (msg.headers or {}).get("ce-type") == "org.safetyhub.incident.opened.v1":
            now = time.time()
            change = IncidentChange.FromString(msg.data)
            self.opened.setdefault(change.envelope.correlation_id, now)
            self.incident_of.setdefault(change.envelope.correlation_id, change.incident_id)

    async def _on_alarm(self, msg: Msg) -> None:
        now = time.time()
        self.raised.setdefault(AlarmTransition.FromString(msg.data).envelope.correlation_id, now)


async def _latency(info: dict[str, str], keys: tuple[str, str], args: argparse.Namespace) -> dict[str, float]:
    key, viewer = keys
    clock = BusClock()
    await clock.start(info["nats_url"])
    opened, raised, incident_of = clock.opened, clock.raised, clock.incident_of
    readers = SseReaders(info["http_url"], viewer, args.sse_clients)
    await readers.start()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    batches = max(1, int(args.seconds * args.rate / args.batch))
    interval = args.batch / args.rate
    # Detector k's one crossing reading goes in batch k * batches // detectors.
    crossing_batch = {k * batches // args.detectors: k for k in range(args.detectors)}
    accepted_at: dict[str, float] = {}
    run = f"inc{int(time.time())}"
    async with aiohttp.ClientSession() as session:

        async def send(number: int) -> None:
            now = datetime.now(UTC).isoformat()
            items, crossing_id = [], None
            for i in range(args.batch):
                device = (number * args.batch + i) % args.detectors
                value = 0.5 + (i % 5) / 10
                obs_id = f"{run}-{number}-{i}"
                if i == 0 and number in crossing_batch:
                    device, value, crossing_id = crossing_batch[number], 30.0, obs_id
                device_id = f"gd-i{device:04d}"
                items.append(
                    {"id": obs_id, "site": SITE, "device": device_id, "kind": "gas.h2s", "unit": "ppm",
                     "value": value, "time": now}
                )  # fmt: skip
            async with session.post(
                info["http_url"] + "/v1/observations", data=msgspec.json.encode(items), headers=headers
            ) as resp:
                await resp.read()
                if resp.status == 202 and crossing_id is not None:
                    accepted_at[crossing_id] = time.time()

        started = time.monotonic()
        tasks = []
        for number in range(batches):
            await asyncio.sleep(max(0.0, started + number * interval - time.monotonic()))
            tasks.append(asyncio.create_task(send(number)))
        await asyncio.gather(*tasks)
        offered_s = time.monotonic() - started
    await asyncio.sleep(5)
    await clock.close()
    await readers.stop()
    latencies = [(opened[i] - t) * 1000 for i, t in accepted_at.items() if i in opened]
    p50, p99 = _percentiles(latencies)
    to_sse = readers.timings(accepted_at, incident_of)
    sse_p50, sse_p99 = _percentiles(to_sse)
    # Where the time goes: reading -> alarm on ALARMS -> incident on INCIDENTS -> on the stream.
    to_alarm = [(raised[i] - t) * 1000 for i, t in accepted_at.items() if i in raised]
    alarm_p50, alarm_p99 = _percentiles(to_alarm)
    fused = [(opened[i] - raised[i]) * 1000 for i in accepted_at if i in raised and i in opened]
    fused_p50, fused_p99 = _percentiles(fused)
    # Published on INCIDENTS to on the live stream: the stream's own share.
    relay_p50, relay_p99 = _percentiles(readers.timings(opened, incident_of))
    return {
        "achieved_per_s": batches * args.batch / offered_s,
        "offered": batches * args.batch,
        "incidents_timed": len(latencies),
        "crossings": len(accepted_at),
        "p50_ms": p50,
        "p99_ms": p99,
        "sse_timed": len(to_sse),
        "sse_p50_ms": sse_p50,
        "sse_p99_ms": sse_p99,
        "alarm_p50_ms": alarm_p50,
        "alarm_p99_ms": alarm_p99,
        "fused_p50_ms": fused_p50,
        "fused_p99_ms": fused_p99,
        "relay_p50_ms": relay_p50,
        "relay_p99_ms": relay_p99,
    }


async def _hub_figures(url: str) -> dict[str, float]:
    """Means from the hub's own histograms, over the run: a unit of work of the alarm engine and
    of fusion, and an outbox message's commit to JetStream's acknowledgement, per service."""
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as resp:
        text = await resp.text()
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith(("_sum", "_count")):
                service = sample.labels.get("service", "")
                sums[f"{sample.name}{'/' + service if service else ''}"] = sample.value
    figures = {}
    for name, key in (
        ("safetyhub_alarms_batch_seconds", "alarm_batch"),
        ("safetyhub_incidents_batch_seconds", "incident_batch"),
        ("safetyhub_outbox_publish_seconds/alarms", "alarm_outbox"),
        ("safetyhub_outbox_publish_seconds/incidents", "incident_outbox"),
    ):
        metric, _, service = name.partition("/")
        suffix = f"/{service}" if service else ""
        count = sums.get(f"{metric}_count{suffix}", 0.0)
        figures[f"{key}_mean_ms"] = (
            1000 * sums.get(f"{metric}_sum{suffix}", 0.0) / count if count else float("nan")
        )
        figures[f"{key}_count"] = count
    return figures


# ---------------------------------------------------------------- 2. the list


_FILL = """
INSERT INTO incidents (tenant, id, site, type, status, severity, severity_rank, opened_at, updated_at,
                       lat, lon, assignee, version, body)
SELECT $1, id, $2, type, status, severity, rank, opened, opened, lat, lon, '', 1,
       jsonb_build_object(
           'id', id, 'tenant', $1::text, 'site', $2::text, 'type', type, 'rule', 0, 'status', status,
           'opened_at', opened, 'last_at', opened, 'updated_at', opened, 'severity', severity,
           'urgency', 'Immediate', 'certainty', 'Likely', 'members', '[]'::jsonb, 'version', 1)
FROM (
    SELECT 'B' || lpad(n::text, 25, '0') AS id,
           (ARRAY['gas_release','fire','equipment_fault','comm_loss','person_down'])[1 + n % 5] AS type,
           (ARRAY['closed','closed','closed','resolved','open','acknowledged'])[1 + n % 6] AS status,
           (ARRAY['Minor','Moderate','Severe','Extreme'])[1 + n % 4] AS severity,
           1 + n % 4 AS rank,
           now() - make_interval(secs => n * 60) AS opened,
           $3 + (n % 97) * 0.002 AS lat,
           $4 + (n % 89) * 0.002 AS lon
    FROM generate_series(1, $5) AS n
) AS g
"""


async def _caught_up(info: dict[str, str], timeout_s: float = 120.0) -> float:
    """Waits until the hub's consumers have nothing left to deliver (the first part's backlog), so
    the list is timed on its own; returns the seconds waited."""
    started = time.perf_counter()
    quiet = 0
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() - started < timeout_s and quiet < 3:
            async with session.get(info["http_url"] + "/metrics") as resp:
                text = await resp.text()
            lag = sum(
                sample.value
                for family in text_string_to_metric_families(text)
                if family.name == "safetyhub_consumer_lag"
                for sample in family.samples
            )
            quiet = quiet + 1 if lag == 0 else 0
            await asyncio.sleep(0.5)
    return time.perf_counter() - started


async def _list(info: dict[str, str], key: str, args: argparse.Namespace) -> dict[str, float]:
    waited = await _caught_up(info)
    print(f"list: the hub caught up with the first part's load after {waited:.1f} s")
    conn = await asyncpg.connect(info["database_url"])
    try:
        await conn.execute(_FILL, TENANT, SITE, LAT0, LON0, args.incidents)
        await conn.execute("ANALYZE incidents")
        stored = await conn.fetchval("SELECT count(*) FROM incidents")
    finally:
        await conn.close()
    queries = {
        "plain": "/v1/incidents?limit=50",
        "filtered": "/v1/incidents?limit=50&status=open&status=acknowledged&severity=Extreme"
        "&type=gas_release",
        "near": f"/v1/incidents?limit=50&near={LAT0 + 0.05:.4f},{LON0 + 0.05:.4f}&radius_m=5000",
    }
    figures: dict[str, float] = {"stored": stored}
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as session:
        for name, path in queries.items():
            timings = []
            for _ in range(args.requests):
                started = time.perf_counter()
                async with session.get(info["http_url"] + path, headers=headers) as resp:
                    body = await resp.read()
                    if resp.status != 200:
                        raise SystemExit(f"{path}: {resp.status} {body[:200]!r}")
                timings.append((time.perf_counter() - started) * 1000)
            figures[f"{name}_p50_ms"], figures[f"{name}_p99_ms"] = _percentiles(timings)
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=5000.0, help="offered observations/s")
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--detectors", type=int, default=100)
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--sse-clients", type=int, default=20, help="live-stream clients reading at once")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="safetyhub-bench-incidents-"))
    os.chmod(workdir, 0o755)  # the embedded PostgreSQL runs unprivileged when we are root
    _site_file(workdir / "bench-site.yaml", args.detectors)
    proc, info = await start_hub(workdir, config=_config(workdir), workers=args.workers, timeout_s=120)
    try:
        gateway = await asyncio.to_thread(create_key, workdir, TENANT, "gateway")
        viewer = await asyncio.to_thread(create_key, workdir, TENANT, "viewer")
        cpu_before = tree_cpu(proc.pid)
        latency = await _latency(info, (gateway, viewer), args)
        cpu = cpu_spent(cpu_before, tree_cpu(proc.pid))
        inside = await _hub_figures(info["http_url"])
        listing = await _list(info, viewer, args)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)

    figures = {
        "workers": args.workers,
        "offered_per_s": args.rate,
        "achieved_per_s": round(latency["achieved_per_s"]),
        "incidents_timed": int(latency["incidents_timed"]),
        "crossings_posted": int(latency["crossings"]),
        "reading_to_incident_p50_ms": round(latency["p50_ms"], 1),
        "reading_to_incident_p99_ms": round(latency["p99_ms"], 1),
        "sse_clients": args.sse_clients,
        "sse_events_timed": int(latency["sse_timed"]),
        "reading_to_sse_p50_ms": round(latency["sse_p50_ms"], 1),
        "reading_to_sse_p99_ms": round(latency["sse_p99_ms"], 1),
        "reading_to_alarm_p50_ms": round(latency["alarm_p50_ms"], 1),
        "reading_to_alarm_p99_ms": round(latency["alarm_p99_ms"], 1),
        "alarm_to_incident_p50_ms": round(latency["fused_p50_ms"], 1),
        "alarm_to_incident_p99_ms": round(latency["fused_p99_ms"], 1),
        "alarm_batch_mean_ms": round(inside["alarm_batch_mean_ms"], 1),
        "fusion_batch_mean_ms": round(inside["incident_batch_mean_ms"], 1),
        "incident_outbox_mean_ms": round(inside["incident_outbox_mean_ms"], 1),
        "published_to_sse_p50_ms": round(latency["relay_p50_ms"], 1),
        "published_to_sse_p99_ms": round(latency["relay_p99_ms"], 1),
        # CPU over the latency part (the offered load and 5 s after): per 1,000 observations
        # offered, by part of the hub's tree; a figure the machine's other load hardly moves.
        "hub_cpu_ms_per_1000_obs": round(1e6 * cpu["hub"] / latency["offered"], 1),
        "postgres_cpu_ms_per_1000_obs": round(1e6 * cpu["postgres"] / latency["offered"], 1),
        "nats_cpu_ms_per_1000_obs": round(1e6 * cpu["nats"] / latency["offered"], 1),
        "incident_changes_published": int(inside["incident_outbox_count"]),
        "alarm_transitions_published": int(inside["alarm_outbox_count"]),
        "incidents_stored": int(listing["stored"]),
        "list_plain_p50_ms": round(listing["plain_p50_ms"], 1),
        "list_plain_p99_ms": round(listing["plain_p99_ms"], 1),
        "list_filtered_p50_ms": round(listing["filtered_p50_ms"], 1),
        "list_filtered_p99_ms": round(listing["filtered_p99_ms"], 1),
        "list_near_p50_ms": round(listing["near_p50_ms"], 1),
        "list_near_p99_ms": round(listing["near_p99_ms"], 1),
    }
    print(
        f"at {figures['achieved_per_s']} obs/s (offered {args.rate:.0f}): reading accepted -> "
        f"incident opened on INCIDENTS p50 {figures['reading_to_incident_p50_ms']} ms, "
        f"p99 {figures['reading_to_incident_p99_ms']} ms "
        f"({figures['incidents_timed']} of {figures['crossings_posted']} incidents timed)"
    )
    print(
        f"reading accepted -> incident.opened on GET /v1/stream at {args.sse_clients} clients: "
        f"p50 {figures['reading_to_sse_p50_ms']} ms, p99 {figures['reading_to_sse_p99_ms']} ms "
        f"({figures['sse_events_timed']} events timed); published on INCIDENTS -> on the stream "
        f"p50 {figures['published_to_sse_p50_ms']} ms, p99 {figures['published_to_sse_p99_ms']} ms"
    )
    print(
        f"where the time goes (p50 / p99 ms): reading -> alarm on ALARMS "
        f"{figures['reading_to_alarm_p50_ms']} / {figures['reading_to_alarm_p99_ms']}; alarm -> incident "
        f"on INCIDENTS {figures['alarm_to_incident_p50_ms']} / {figures['alarm_to_incident_p99_ms']}; "
        f"INCIDENTS -> stream {figures['published_to_sse_p50_ms']} / {figures['published_to_sse_p99_ms']}"
    )
    print(
        "inside the hub, mean over the run: alarm engine unit of work "
        f"{inside['alarm_batch_mean_ms']:.1f} ms ({inside['alarm_batch_count']:.0f}), fusion unit of work "
        f"{inside['incident_batch_mean_ms']:.1f} ms ({inside['incident_batch_count']:.0f}), outbox commit "
        f"-> JetStream ack: alarms {inside['alarm_outbox_mean_ms']:.1f} ms, incidents "
        f"{inside['incident_outbox_mean_ms']:.1f} ms"
    )
    print(
        f"CPU per 1,000 observations over the latency part: hub {figures['hub_cpu_ms_per_1000_obs']} ms, "
        f"PostgreSQL {figures['postgres_cpu_ms_per_1000_obs']} ms, "
        f"NATS {figures['nats_cpu_ms_per_1000_obs']} ms "
        f"({figures['alarm_transitions_published']} alarm transitions and "
        f"{figures['incident_changes_published']} incident changes published)"
    )
    for name in ("plain", "filtered", "near"):
        print(
            f"GET /v1/incidents {name} with {figures['incidents_stored']} stored: "
            f"p50 {figures[f'list_{name}_p50_ms']} ms, p99 {figures[f'list_{name}_p99_ms']} ms"
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
