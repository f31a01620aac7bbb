#!/usr/bin/env python3
"""The delivery path alone: queue -> claim -> sign -> send -> record, with its PostgreSQL cost by
statement.

An embedded PostgreSQL with pg_stat_statements, the escalation tables, --endpoints endpoints,
each a bare HTTP receiver in this process (answers 204 at once: the receivers' cost is kept out),
and one delivery engine as the hub runs it. --rate incidents per second are queued for --seconds,
--endpoints deliveries each, as the consumer queues them (one transaction per incident). Prints
the time from queueing to each incident's first webhook (p50, p99), deliveries/s, CPU seconds
per delivery of this process and of PostgreSQL, and PostgreSQL's statements by total time. Not a
test; the whole hub's figures are bench_escalation.py's.
Usage: scripts/bench_delivery_path.py [--seconds 10] [--rate 100] [--endpoints 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench_hub import cpu_spent, tree_cpu
from services.common.contracts.ids import new_id
from services.common.db import migrations
from services.common.embedded import EmbeddedPostgres
from services.common.logging import configure_logging
from services.escalation.adapters import deliveries_db
from services.escalation.adapters.deliveries_db import Queued
from services.escalation.adapters.secrets import new_secret
from services.escalation.config import EscalationConfig
from services.escalation.engine import DeliveryEngine
from services.hub.registry import REGISTRY

TENANT = "ulsan-refining"
BODY = b'{"specversion": "1.0", "data": {"title": "' + b"x" * 700 + b'"}}'


class Receivers:
    def __init__(self) -> None:
        self.first: dict[str, float] = {}  # incident -> first webhook
        self.incident_of: dict[str, str] = {}  # webhook-id -> incident
        self.received = 0
        self.done = asyncio.Event()
        self.expected = 0

    def got(self, webhook_id: str) -> None:
        self.received += 1
        self.first.setdefault(self.incident_of[webhook_id], time.monotonic())
        if self.received >= self.expected:
            self.done.set()


class Bare(asyncio.Protocol):
    def __init__(self, receivers: Receivers) -> None:
        self._receivers = receivers
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            raw = self._buffer[:end].decode("latin-1")
            head = raw.lower()
            length = int(head.split("content-length:")[1].split("\r\n")[0])
            if len(self._buffer) < end + 4 + length:
                return
            self._buffer = self._buffer[end + 4 + length :]
            start = head.index("webhook-id:") + len("webhook-id:")
            self._receivers.got(raw[start : raw.index("\r\n", start)].strip())
            assert self._transport is not None
            self._transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")


async def prepare_postgres(workdir: Path) -> tuple[EmbeddedPostgres, str]:
    server = EmbeddedPostgres(workdir / "pg")
    url = await server.start()
    conn = await asyncpg.connect(url)
    await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    await conn.close()
    await server.stop()
    url = await server.start()
    conn = await asyncpg.connect(url)
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    await conn.close()
    return server, url


async def make_endpoints(
    pool: asyncpg.Pool, receivers: Receivers, listening: list[asyncio.Server], count: int
) -> list[str]:
    loop = asyncio.get_running_loop()
    endpoints = []
    now = datetime.now(UTC)
    for _ in range(count):
        srv = await loop.create_server(lambda: Bare(receivers), "127.0.0.1", 0)
        listening.append(srv)
        endpoint_id = new_id()
        endpoints.append(endpoint_id)
        await pool.execute(
            "INSERT INTO escalation_endpoints (tenant, id, url, format, language, min_severity, secret,"
            " created_at, updated_at) VALUES ($1, $2, $3, 'json', 'en', 'Unknown', $4, $5, $5)",
            TENANT,
            endpoint_id,
            f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/hook",
            new_secret(),
            now,
        )
    return endpoints


async def offer(
    pool: asyncpg.Pool,
    receivers: Receivers,
    endpoints: list[str],
    queued_at: dict[str, float],
    *,
    total: int,
    rate: float,
) -> None:
    """`total` incidents at `rate` per second, each one transaction queueing a delivery per endpoint."""
    started = time.monotonic()
    for n in range(total):
        pause = started + n / rate - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        incident = new_id()
        at = datetime.now(UTC)
        rows = []
        for endpoint_id in endpoints:
            delivery_id = "msg_" + new_id()
            receivers.incident_of[delivery_id] = incident
            rows.append(
                Queued(delivery_id, TENANT, endpoint_id, incident, "s", "opened", "t", BODY, "a/json", at)
            )
        queued_at[incident] = time.monotonic()
        async with pool.acquire() as conn, conn.transaction():
            await deliveries_db.queue(conn, rows, at)


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    server, url = await prepare_postgres(workdir)
    pool = await asyncpg.create_pool(url, min_size=4, max_size=10)
    receivers = Receivers()
    listening: list[asyncio.Server] = []
    try:
        await migrations.apply(pool, REGISTRY.migrations())
        endpoints = await make_endpoints(pool, receivers, listening, args.endpoints)
        engine = DeliveryEngine(pool, EscalationConfig())
        await engine.start()
        await pool.execute("SELECT pg_stat_statements_reset()")
        total = int(args.seconds * args.rate)
        receivers.expected = total * args.endpoints
        queued_at: dict[str, float] = {}
        pg_pid = server.pid
        assert pg_pid is not None
        pg0, own0 = tree_cpu(pg_pid), time.process_time()
        started = time.monotonic()
        await offer(pool, receivers, endpoints, queued_at, total=total, rate=args.rate)
        try:
            await asyncio.wait_for(receivers.done.wait(), 120)
        except TimeoutError:
            print(f"only {receivers.received} of {receivers.expected} received", file=sys.stderr)
            raise
        elapsed = time.monotonic() - started
        pg_cpu = sum(cpu_spent(pg0, tree_cpu(pg_pid)).values())
        own_cpu = time.process_time() - own0
        await engine.stop()
        statements = await pool.fetch(
            "SELECT calls, total_exec_time, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 90) AS q"
            " FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 8"
        )
    finally:
        for srv in listening:
            srv.close()
        await pool.close()
        await server.stop()
    latencies = [(receivers.first[i] - t) * 1000 for i, t in queued_at.items() if i in receivers.first]
    ordered = sorted(latencies)
    deliveries = receivers.received
    for s in statements:
        print(f"{s['total_exec_time']:9.0f} ms {s['calls']:7d} calls {s['rows']:8d} rows  {s['q']}")
    return {
        "deliveries": deliveries,
        "deliveries_per_s": round(deliveries / elapsed, 1),
        "first_webhook_p50_ms": round(statistics.median(latencies), 1),
        "first_webhook_p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
        "process_cpu_us_per_delivery": round(own_cpu / deliveries * 1e6),
        "postgres_cpu_us_per_delivery": round(pg_cpu / deliveries * 1e6),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0, help="incidents queued per second")
    parser.add_argument("--endpoints", type=int, default=20)
    args = parser.parse_args()
    configure_logging("warning")
    workdir = Path(tempfile.mkdtemp(prefix="bench-delivery-path-"))
    workdir.chmod(0o755)
    try:
        figures = uvloop.run(run(args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
