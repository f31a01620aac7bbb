#!/usr/bin/env python3
"""Escalation benchmark: incidents fanned out to 20 endpoints as signed webhooks, with the whole
hub running.

Starts `safetyhub up` (every service; embedded NATS and PostgreSQL) with the demo sites, makes
--endpoints endpoints of the demo tenant, each a real HTTP receiver in this process (aiohttp, one
port each) that verifies every delivery's signature with `standardwebhooks`, then publishes
--rate `opened` incident changes per second for --seconds on INCIDENTS, as the incidents service
publishes them (the path from a reading to that message is bench_incidents.py's). Measured:
- latency: from an opening published to the first signed webhook of that incident received
  (p50, p99, max), as escalation adds it to the incident's own;
- deliveries/s: every delivery received (incidents x endpoints) over the time from the first
  publish to the last delivery;
- CPU per delivery: what the hub's processes (hub, nats-server, PostgreSQL) used from the first
  publish to the last delivery, less what they use idle (measured for 5 s before, per second,
  times the run's length), over the deliveries received; the receivers' own CPU (this process)
  apart. Unlike the rates, this hardly moves when other programs share the machine, whose
  load average is printed with the figures.
Prints the figures, then one JSON line. Not a test.
Usage: scripts/bench_escalation.py [--seconds 10] [--rate 100] [--endpoints 20] [--concurrency 8]
       [--profile FILE]
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
import nats
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench_hub import cpu_spent, create_key, start_hub, tree_cpu
from services.alarms.domain.model import AlarmClass, Priority
from services.common.contracts.ids import new_id
from services.incidents.adapters.messages import change_message
from services.incidents.domain.incident import Incident, Member
from services.incidents.domain.model import IncidentType, Severity, Status
from services.incidents.domain.timeline import Entry

TENANT = "ulsan-refining"
SITE = "ulsan-refinery"
IDLE_S = 5.0


class Receivers:
    """--endpoints HTTP receivers: verify, then note when each incident's first webhook came."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.received = 0
        self.unverified = 0
        self.last = 0.0
        self.runners: list[web.AppRunner] = []
        self.urls: list[str] = []
        self.secrets: dict[int, Webhook] = {}
        self.expected = 0
        self.all_in = asyncio.Event()

    def handler(self, index: int):  # type: ignore[no-untyped-def]
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            try:
                event = self.secrets[index].verify(body, dict(request.headers))
            except (WebhookVerificationError, KeyError):
                self.unverified += 1
                return web.Response(status=401)
            now = time.monotonic()
            self.first.setdefault(event["subject"], now)
            self.received += 1
            self.last = now
            if self.expected and self.received >= self.expected:
                self.all_in.set()
            return web.Response(status=204)

        return handle

    async def start(self, count: int) -> None:
        for index in range(count):
            app = web.Application()
            app.router.add_post("/hook", self.handler(index))
            runner = web.AppRunner(app, handle_signals=False, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.runners.append(runner)
            self.urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}/hook")

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


def opening() -> tuple[str, object]:
    now = datetime.now(UTC)
    incident = Incident(
        id=new_id(),
        tenant=TENANT,
        site=SITE,
        type=IncidentType.GAS_RELEASE,
        rule=0,
        status=Status.OPEN,
        opened_at=now,
        last_at=now,
        updated_at=now,
        severity=Severity.EXTREME,
        members=[
            Member(
                signal_id=new_id(),
                alarm_id="gd-fcc2-203--h2s-high",
                device="gd-fcc2-203",
                rule="h2s-high",
                kind="gas.h2s",
                zone="fcc-2",
                position=(35.47782, 129.35544),
                alarm_class=AlarmClass.SAFETY,
                priority=Priority.EMERGENCY,
                at=now,
            )
        ],
        version=1,
    )
    entry = Entry(
        id=new_id(),
        incident_id=incident.id,
        at=now,
        actor="system",
        change="opened",
        what="opened",
        status=Status.OPEN,
        tenant=TENANT,
    )
    return incident.id, change_message(entry, incident)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def make_endpoints(workdir: Path, http_url: str, receivers: Receivers, count: int) -> None:
    admin = await asyncio.to_thread(create_key, workdir, TENANT, "admin")
    await receivers.start(count)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin}"}) as session:
        for index, url in enumerate(receivers.urls):
            async with session.post(http_url + "/v1/endpoints", json={"url": url}) as resp:
                created = await resp.json()
                assert resp.status == 201, created
            receivers.secrets[index] = Webhook(created["secret"])


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, float | int]:
    config = workdir / "hub.yaml"
    sites = [str(ROOT / "sites" / "ulsan-demo.yaml")]
    config.write_text(
        json.dumps(
            {
                "sites": sites,
                "log_level": "warning",
                "escalation": {"poll_interval_s": 0.5, "endpoint_concurrency": args.concurrency},
            }
        )
    )
    proc, info = await start_hub(workdir, config=config, profile=args.profile)
    receivers = Receivers()
    try:
        await make_endpoints(workdir, info["http_url"], receivers, args.endpoints)
        nc = await nats.connect(info["nats_url"])
        js = nc.jetstream()
        published: dict[str, float] = {}
        total = int(args.seconds * args.rate)
        # What the hub spends doing nothing (every service's timers and relays polling), per second:
        # taken off the run's CPU for the per-delivery figures, since the run's length varies.
        idle_before = tree_cpu(proc.pid)
        await asyncio.sleep(IDLE_S)
        idle = cpu_spent(idle_before, tree_cpu(proc.pid))
        load_before = os.getloadavg()[0]
        cpu_before = tree_cpu(proc.pid)
        own_before = time.process_time()
        started = time.monotonic()
        for n in range(total):
            due = started + n / args.rate
            pause = due - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            incident_id, message = opening()
            published[incident_id] = time.monotonic()
            await js.publish(message.subject, message.payload, headers=message.headers)  # type: ignore[attr-defined]
        offered_s = time.monotonic() - started
        expected = total * args.endpoints
        receivers.expected = expected
        if receivers.received >= expected:
            receivers.all_in.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receivers.all_in.wait(), 120)
        cpu = cpu_spent(cpu_before, tree_cpu(proc.pid))
        run_s = time.monotonic() - started
        own_cpu = time.process_time() - own_before
        load_after = os.getloadavg()[0]
        await nc.close()
    finally:
        await receivers.stop()
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 60)

    def per_delivery(spent: float, idle_spent: float) -> int:
        """CPU microseconds per delivery received, what the hub spends idle taken off."""
        if not receivers.received:
            return -1
        return round(max(0.0, spent - idle_spent / IDLE_S * run_s) / receivers.received * 1e6)

    latencies = [(receivers.first[i] - t) * 1000 for i, t in published.items() if i in receivers.first]
    elapsed = receivers.last - started
    figures: dict[str, float | int] = {
        "incidents": total,
        "endpoints": args.endpoints,
        "offered_incidents_per_s": round(total / offered_s, 1),
        "deliveries_received": receivers.received,
        "deliveries_expected": expected,
        "unverified": receivers.unverified,
        "deliveries_per_s": round(receivers.received / elapsed, 1) if elapsed > 0 else 0.0,
        "first_webhook_p50_ms": round(statistics.median(latencies), 1) if latencies else -1,
        "first_webhook_p99_ms": round(pct(latencies, 0.99), 1) if latencies else -1,
        "first_webhook_max_ms": round(max(latencies), 1) if latencies else -1,
        "hub_cpu_s": round(cpu["hub"], 2),
        "postgres_cpu_s": round(cpu["postgres"], 2),
        "nats_cpu_s": round(cpu["nats"], 2),
        "receivers_cpu_s": round(own_cpu, 2),
        "idle_hub_cpu_s_per_s": round(idle["hub"] / IDLE_S, 3),
        "idle_all_cpu_s_per_s": round(sum(idle.values()) / IDLE_S, 3),
        "hub_cpu_us_per_delivery": per_delivery(cpu["hub"], idle["hub"]),
        "postgres_cpu_us_per_delivery": per_delivery(cpu["postgres"], idle["postgres"]),
        "all_cpu_us_per_delivery": per_delivery(sum(cpu.values()), sum(idle.values())),
        "load_average_1m_before": round(load_before, 2),
        "load_average_1m_after": round(load_after, 2),
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0, help="incidents opened per second")
    parser.add_argument("--endpoints", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8, help="escalation.endpoint_concurrency")
    parser.add_argument(
        "--profile", type=Path, help="run the hub under cProfile and write its profile to this file"
    )
    args = parser.parse_args()
    if args.profile is not None:
        args.profile = args.profile.resolve()
    workdir = Path(tempfile.mkdtemp(prefix="bench-escalation-"))
    workdir.chmod(0o755)
    try:
        figures = asyncio.run(run(args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rate, endpoints = figures["offered_incidents_per_s"], figures["endpoints"]
    print(f"{figures['incidents']} incidents at {rate}/s to {endpoints} endpoints")
    received, expected = figures["deliveries_received"], figures["deliveries_expected"]
    print(
        f"deliveries: {received} of {expected} received and verified"
        f" ({figures['unverified']} unverified), {figures['deliveries_per_s']}/s"
    )
    print(
        f"opened -> first signed webhook: p50 {figures['first_webhook_p50_ms']} ms,"
        f" p99 {figures['first_webhook_p99_ms']} ms, max {figures['first_webhook_max_ms']} ms"
    )
    print(
        f"CPU: hub {figures['hub_cpu_s']} s, PostgreSQL {figures['postgres_cpu_s']} s,"
        f" NATS {figures['nats_cpu_s']} s; per delivery, less the idle hub's"
        f" {figures['idle_all_cpu_s_per_s']} CPU s/s: hub {figures['hub_cpu_us_per_delivery']} us,"
        f" PostgreSQL {figures['postgres_cpu_us_per_delivery']} us, all"
        f" {figures['all_cpu_us_per_delivery']} us; receivers"
        f" {figures['receivers_cpu_s']} s; load average {figures['load_average_1m_before']}"
        f" -> {figures['load_average_1m_after']}"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
