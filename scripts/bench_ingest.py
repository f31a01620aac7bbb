#!/usr/bin/env python3
"""Ingest benchmark: observations/s accepted and stored end to end, against a bare JetStream publisher.

Starts `safetyhub up` (embedded NATS and PostgreSQL) in a temporary data dir, then:
1. baseline: a bare nats-py publisher sends the same observations (one message each: the
   observation alone, encoded and with headers as the hub does) to a scratch stream on the same
   NATS server and waits for every JetStream acknowledgement: once with nats-py's
   `publish_async` (the stock API), once pipelined;
2. load: N concurrent keep-alive connections POST batches to /v1/observations for --seconds;
   the items cycle through the refinery's (device, kind) points, 54 on 39 devices, so a post of
   1,000 readings carries about 25 per device and becomes 39 bus messages;
3. waits until PostgreSQL holds every accepted observation and reads, per row, the time from the
   POST (each observation's `time` is stamped when its batch is sent) to the row's commit.

Prints the figures (among them the CPU the hub, its nats-server and PostgreSQL spent per stored
observation, which other load on the machine disturbs far less than the rates), then one JSON
line. Not a test: CI does not run it.
Usage: scripts/bench_ingest.py [--seconds 30] [--batch 1000] [--connections 8] [--workers 2] [--rate N]
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
import asyncpg
import msgspec
import nats
import psutil
from nats.js.api import StorageType, StreamConfig

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench_hub import cpu_spent, create_key, start_hub, tree_cpu
from services.common.sites.registry import SiteRegistry
from services.ingest.domain.contract import ObservationIn
from services.ingest.encode import to_message

TENANT = "ulsan-refining"
SITE = "ulsan-refinery"


Point = tuple[str, str, str, float]  # device, kind, unit, top of its range


def _points(registry: SiteRegistry) -> list[Point]:
    """Each measuring point with the top of its range: the readings posted stay inside it, as a
    plant's do (a reading outside it is a device fault, stored as bad)."""
    site = registry.site(SITE)
    assert site is not None
    return [
        (d.id, m.kind, m.unit, m.range[1] if m.range is not None else 100.0)
        for d in site.devices
        for m in d.measures
    ]


def _batch(points: list[Point], run: str, start: int, size: int) -> bytes:
    now = datetime.now(UTC).isoformat()
    items = []
    for n in range(start, start + size):
        device, kind, unit, top = points[n % len(points)]
        items.append(
            {
                "id": f"{run}-{n}",
                "site": SITE,
                "device": device,
                "kind": kind,
                "unit": unit,
                "value": top * (n % 97) / 96.0,
                "time": now,
            }
        )
    return msgspec.json.encode(items)


def _raw_messages(points: list[Point], count: int) -> list[tuple[str, bytes, dict[str, str]]]:
    """The same observations as the hub publishes: protobuf payload, CloudEvents headers."""
    now = datetime.now(UTC)
    out = []
    for n in range(count):
        device, kind, unit, _ = points[n % len(points)]
        item = ObservationIn(
            id=f"raw-{n}", site=SITE, device=device, kind=kind, unit=unit, value=n / 10.0, time=now
        )
        msg = to_message(item, tenant=TENANT, source="/bench", received=now)
        out.append((msg.subject.replace("obs.", "bench.", 1), msg.payload, msg.headers))
    return out


async def _pipelined(nc: nats.NATS, messages: list[tuple[str, bytes, dict[str, str]]]) -> None:
    """Core-NATS publishes with reply inboxes, up to 20,000 unacknowledged: the hub's own path."""
    inbox = nc.new_inbox()
    window = asyncio.Semaphore(20_000)
    left = len(messages)
    done = asyncio.get_running_loop().create_future()

    async def on_ack(_: object) -> None:
        nonlocal left
        window.release()
        left -= 1
        if left == 0:
            done.set_result(None)

    sub = await nc.subscribe(inbox + ".*", cb=on_ack, pending_msgs_limit=-1)
    for n, (subject, payload, headers) in enumerate(messages):
        await window.acquire()
        await nc.publish(subject, payload, reply=f"{inbox}.{n}", headers=headers)
    await done
    await sub.unsubscribe()


async def _baseline(nats_url: str, points: list[tuple[str, str, str]], count: int) -> dict[str, float]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream(publish_async_max_pending=20_000)
    messages = _raw_messages(points, count)
    rates: dict[str, float] = {}
    for mode in ("publish_async", "pipelined"):
        stream = "BENCH_RAW"
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
        await js.add_stream(StreamConfig(name=stream, subjects=["bench.>"], storage=StorageType.FILE))
        started = time.perf_counter()
        if mode == "publish_async":
            for subject, payload, headers in messages:
                await js.publish_async(subject, payload, headers=dict(headers))
            await js.publish_async_completed()
        else:
            await _pipelined(nc, messages)
        rates[mode] = count / (time.perf_counter() - started)
        info = await js.stream_info(stream)
        assert info.state.messages == count, f"{mode}: stream holds {info.state.messages} of {count}"
        await js.delete_stream(stream)
    await nc.close()
    return rates


async def _load(url: str, key: str, points: list[tuple[str, str, str]], args: argparse.Namespace, run: str):
    latencies: list[float] = []
    accepted = 0
    failures: dict[int, int] = {}
    counter = 0
    stop_at = time.monotonic() + args.seconds
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    # With --rate, each connection sends one batch per interval (an offered load, for latency at a
    # sustainable rate); without it, as fast as the hub answers (for throughput).
    interval = args.batch * args.connections / args.rate if args.rate > 0 else 0.0

    async def worker(session: aiohttp.ClientSession, slot: int) -> None:
        nonlocal accepted, counter
        # Staggered, so the connections do not all send in the same instant and queue up.
        next_send = time.monotonic() + slot * interval / args.connections
        while time.monotonic() < stop_at:
            if interval:
                await asyncio.sleep(max(0.0, next_send - time.monotonic()))
                next_send += interval
            start = counter
            counter += args.batch
            body = _batch(points, run, start, args.batch)
            sent = time.perf_counter()
            async with session.post(url + "/v1/observations", data=body, headers=headers) as resp:
                payload = await resp.read()
                if resp.status == 202:
                    accepted += len(msgspec.json.decode(payload)["accepted"])
                    latencies.append(time.perf_counter() - sent)
                else:
                    failures[resp.status] = failures.get(resp.status, 0) + 1
                    await asyncio.sleep(0.05)

    connector = aiohttp.TCPConnector(limit=args.connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session, slot) for slot in range(args.connections)))
        elapsed = time.perf_counter() - started
    return accepted, elapsed, latencies, failures


async def _wait_stored(dsn: str, run: str, expected: int, deadline_s: float = 120.0) -> asyncpg.Record:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + deadline_s
        while True:
            row = await conn.fetchrow(
                "SELECT count(*) AS n, min(time) AS first_sent, max(stored) AS last_stored,"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM stored - time)) AS p50,"
                " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM stored - time)) AS p99"
                " FROM observations WHERE id LIKE $1",
                f"{run}-%",
            )
            if row["n"] >= expected or time.monotonic() > deadline:
                return row
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--baseline-count", type=int, default=200_000)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="offered observations/s (default: as fast as possible)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="hub worker processes (safetyhub up --workers)"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="safetyhub-bench-"))
    os.chmod(workdir, 0o755)  # the embedded PostgreSQL runs unprivileged when we are root
    registry = SiteRegistry.load([ROOT / "sites" / "ulsan-demo.yaml"])
    points = _points(registry)
    proc, info = await start_hub(workdir, workers=args.workers)
    hub = psutil.Process(proc.pid)
    peak_rss = 0
    sampling = True

    async def sample_rss() -> None:
        # The hub's own processes: the supervisor and its workers, not nats-server or PostgreSQL.
        nonlocal peak_rss
        while sampling:
            try:
                procs = [hub] + [c for c in hub.children() if "services.hub.worker" in " ".join(c.cmdline())]
                peak_rss = max(peak_rss, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample_rss())
    try:
        key = await asyncio.to_thread(create_key, workdir, TENANT, "gateway")
        baseline = await _baseline(info["nats_url"], points, args.baseline_count)
        run = f"bench{int(time.time())}"
        cpu_before = tree_cpu(hub.pid)
        accepted, elapsed, latencies, failures = await _load(info["http_url"], key, points, args, run)
        row = await _wait_stored(info["database_url"], run, accepted)
        cpu = cpu_spent(cpu_before, tree_cpu(hub.pid))
    finally:
        sampling = False
        await sampler
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)

    stored = int(row["n"])
    span = (row["last_stored"] - row["first_sent"]).total_seconds()
    stored_per_s = stored / span if span > 0 else 0.0
    accepted_per_s = accepted / elapsed
    lat_ms = sorted(x * 1000 for x in latencies)
    figures = {
        "seconds": round(elapsed, 1),
        "batch_size": args.batch,
        "connections": args.connections,
        "workers": args.workers,
        "offered_per_s": args.rate or None,
        "accepted": accepted,
        "stored": stored,
        "lost": accepted - stored,
        "accepted_per_s": round(accepted_per_s),
        "stored_per_s": round(stored_per_s),
        "post_p50_ms": round(statistics.median(lat_ms), 1) if lat_ms else None,
        "post_p99_ms": round(lat_ms[int(len(lat_ms) * 0.99) - 1], 1) if lat_ms else None,
        "e2e_p50_ms": round(float(row["p50"]) * 1000, 1),
        "e2e_p99_ms": round(float(row["p99"]) * 1000, 1),
        "peak_rss_mb": round(peak_rss / 1024 / 1024, 1),
        "cpu_s": round(sum(cpu.values()), 1),
        "cpu_us_per_stored": round(sum(cpu.values()) / stored * 1e6, 1) if stored else None,
        **{
            f"cpu_us_per_stored_{part}": round(seconds / stored * 1e6, 1) if stored else None
            for part, seconds in cpu.items()
        },
        "raw_publish_async_per_s": round(baseline["publish_async"]),
        "raw_pipelined_per_s": round(baseline["pipelined"]),
        "ratio_to_raw_publish": round(stored_per_s / baseline["publish_async"], 2),
        "ratio_to_raw_pipelined": round(stored_per_s / baseline["pipelined"], 2),
        "http_failures": failures,
    }
    _report(figures)
    print(json.dumps(figures))


def _report(f: dict[str, object]) -> None:
    print(f"accepted {f['accepted']} in {f['seconds']} s = {f['accepted_per_s']} obs/s")
    print(f"stored {f['stored']} = {f['stored_per_s']} obs/s end to end; lost {f['lost']}")
    print(f"POST latency p50 {f['post_p50_ms']} ms, p99 {f['post_p99_ms']} ms")
    print(f"POST to row in PostgreSQL p50 {f['e2e_p50_ms']} ms, p99 {f['e2e_p99_ms']} ms")
    print(f"peak RSS of the hub (supervisor and {f['workers']} workers) {f['peak_rss_mb']} MB")
    print(
        f"CPU of the hub with its nats-server and PostgreSQL: {f['cpu_s']} s,"
        f" {f['cpu_us_per_stored']} us per stored observation (hub {f['cpu_us_per_stored_hub']},"
        f" nats-server {f['cpu_us_per_stored_nats']}, PostgreSQL {f['cpu_us_per_stored_postgres']})"
    )
    print(
        f"bare nats-py, same server: publish_async {f['raw_publish_async_per_s']} msg/s,"
        f" pipelined {f['raw_pipelined_per_s']} msg/s"
    )
    print(
        f"ratio stored/raw: {f['ratio_to_raw_publish']} (publish_async),"
        f" {f['ratio_to_raw_pipelined']} (pipelined)"
    )


if __name__ == "__main__":
    asyncio.run(main())
