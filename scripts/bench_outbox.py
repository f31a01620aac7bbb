#!/usr/bin/env python3
"""Outbox benchmark: latency from a unit of work's commit to JetStream, at an offered rate.

Starts an embedded nats-server and PostgreSQL in a temporary directory, applies the migrations,
creates a scratch stream and runs one outbox relay, as a service process does. Then, for
--seconds, it starts units of work at --rate per second (open loop: on schedule, whether or not
earlier ones finished), each upserting one state row and emitting --per-unit messages over 10
subjects. Afterwards it reads the stream and takes, per message, the time from the end of its
unit of work's block (the outbox INSERT and the durable COMMIT still to come: an upper bound),
and from PostgreSQL's acknowledgement of its COMMIT (`uow.committed_at`), to the time JetStream
stored it (the server's timestamp; same machine, same clock).

It checks that the stream holds every committed message once (order per subject is the tests'
business: concurrent units of work commit in no set order), and prints p50/p99/max, the rates
and the peak RSS of this process (units of work and relay), then one JSON line. Not a test: CI
does not run it.
Usage: scripts/bench_outbox.py [--seconds 30] [--rate 1000] [--per-unit 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.js.api import StorageType, StreamConfig

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.common.bus.connection import connect_bus
from services.common.bus.publisher import JetStreamPublisher, OutgoingMessage
from services.common.contracts.cloudevents import ce_headers
from services.common.db import migrations
from services.common.db.pool import create_pool
from services.common.embedded import EmbeddedNats, EmbeddedPostgres
from services.common.outbox import Outbox, OutboxRelay
from services.hub.registry import REGISTRY

STREAM = "BENCH_OUTBOX"
SUBJECTS = 10
PAYLOAD = bytes(range(200))  # about the size of an alarm transition in protobuf


def _message(n: int) -> OutgoingMessage:
    headers = ce_headers(
        id=f"bench-{n:09d}",
        type="org.safetyhub.alarm.transition.v1",
        source="/alarms/bench",
        time="2026-12-01T09:00:00Z",
    )
    return OutgoingMessage(f"bench.outbox.{n % SUBJECTS}", PAYLOAD, headers)


async def _produce(outbox: Outbox, args: argparse.Namespace) -> tuple[dict[str, tuple[float, float]], float]:
    """Units of work on schedule. Returns, per message id, the wall-clock times its block ended
    and its COMMIT was acknowledged, and the span of the whole run in seconds."""
    times: dict[str, tuple[float, float]] = {}
    tasks: set[asyncio.Task[None]] = set()
    units = int(args.seconds * args.rate)

    async def unit(index: int) -> None:
        async with outbox.unit_of_work() as uow:
            await uow.connection.execute(
                "INSERT INTO bench_state (id, n) VALUES ($1, $2)"
                " ON CONFLICT (id) DO UPDATE SET n = excluded.n",
                index % 1000,
                index,
            )
            for k in range(args.per_unit):
                uow.emit(_message(index * args.per_unit + k))
            block_end = time.time()
        for k in range(args.per_unit):
            times[f"bench-{index * args.per_unit + k:09d}"] = (block_end, uow.committed_at or block_end)

    loop = asyncio.get_running_loop()
    started = loop.time()
    for index in range(units):
        due = started + index / args.rate
        delay = due - loop.time()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        task = asyncio.create_task(unit(index))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*list(tasks))
    return times, loop.time() - started


async def _read_stream(nc: nats.NATS, count: int) -> list[tuple[str, str, float]]:
    """(subject, id, stored time) of every message in the stream, in stream order."""
    js = nc.jetstream()
    out: list[tuple[str, str, float]] = []
    done = asyncio.get_running_loop().create_future()

    async def on_message(msg: nats.aio.msg.Msg) -> None:
        out.append((msg.subject, (msg.headers or {})["Nats-Msg-Id"], msg.metadata.timestamp.timestamp()))
        if len(out) >= count and not done.done():
            done.set_result(None)

    sub = await js.subscribe("bench.outbox.>", ordered_consumer=True, cb=on_message)
    try:
        await asyncio.wait_for(done, timeout=120)
    finally:
        await sub.unsubscribe()
    return out


async def run(args: argparse.Namespace, work: Path) -> dict[str, object]:
    nats_server, postgres = EmbeddedNats(work / "nats"), EmbeddedPostgres(work / "pg")
    try:
        nats_url, database_url = await asyncio.gather(nats_server.start(), postgres.start())
        pool = await create_pool(database_url, min_size=4, max_size=20)
        await migrations.apply(pool, REGISTRY.migrations(()))
        await pool.execute("CREATE TABLE bench_state (id int PRIMARY KEY, n bigint NOT NULL)")
        nc = await connect_bus(nats_url, name="bench-outbox")
        js = nc.jetstream()
        await js.add_stream(
            StreamConfig(
                name=STREAM, subjects=["bench.outbox.>"], storage=StorageType.FILE, duplicate_window=120
            )
        )
        publisher = JetStreamPublisher(nc)
        await publisher.start()
        relay = OutboxRelay(pool, publisher, "bench")
        relay.start()
        while not relay.leading:  # noqa: ASYNC110 - a flag, polled once at start
            await asyncio.sleep(0.01)

        times, span = await _produce(Outbox(pool, "bench"), args)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while await pool.fetchval("SELECT count(*) FROM outbox") and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        info = await js.stream_info(STREAM)
        stored = await _read_stream(nc, min(int(info.state.messages), len(times)))
        await relay.stop()
        await publisher.close()
        await nc.close()
        await pool.close()
    finally:
        await asyncio.gather(nats_server.stop(), postgres.stop(), return_exceptions=True)
        shutil.rmtree(work, ignore_errors=True)

    ids = [message_id for _, message_id, _ in stored]
    from_commit = sorted((at - times[i][1]) * 1000 for _, i, at in stored if i in times)
    from_block = sorted((at - times[i][0]) * 1000 for _, i, at in stored if i in times)
    first_stored, last_stored = min(at for *_, at in stored), max(at for *_, at in stored)
    return {
        "seconds": args.seconds,
        "offered_per_s": args.rate * args.per_unit,
        "committed_per_s": round(len(times) / span, 1),
        "published_per_s": round(len(stored) / max(last_stored - first_stored, 1e-9), 1),
        "messages": len(times),
        "lost": len(set(times) - set(ids)),
        "duplicates": len(ids) - len(set(ids)),
        "p50_ms": round(_quantile(from_commit, 0.5), 2),
        "p99_ms": round(_quantile(from_commit, 0.99), 2),
        "max_ms": round(from_commit[-1], 2),
        "block_end_p50_ms": round(_quantile(from_block, 0.5), 2),
        "block_end_p99_ms": round(_quantile(from_block, 0.99), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="units of work started per second")
    parser.add_argument("--per-unit", type=int, default=1, help="messages emitted by each unit of work")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="safetyhub-bench-outbox-"))
    work.chmod(0o755)  # the embedded PostgreSQL may run as another account (see README)
    try:
        import uvloop

        figures = uvloop.run(run(args, work))
    except ImportError:
        figures = asyncio.run(run(args, work))
    print(
        f"{figures['messages']} messages at {figures['offered_per_s']}/s offered:"
        f" committed {figures['committed_per_s']}/s, published {figures['published_per_s']}/s"
    )
    print(
        f"commit to stream: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms,"
        f" max {figures['max_ms']} ms; from the end of the block (INSERT and COMMIT included):"
        f" p50 {figures['block_end_p50_ms']} ms, p99 {figures['block_end_p99_ms']} ms"
    )
    print(f"lost {figures['lost']}, duplicates {figures['duplicates']}; peak RSS {figures['peak_rss_mb']} MB")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
