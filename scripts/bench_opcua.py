"""The OPC UA part of scripts/bench_bridges.py: an asyncua server in the benchmark's process with
one Double variable per (device, kind) of the refinery, the bridge's file for it, and two runs:
a bare asyncua client's subscription receiving the value changes, and the hub's bridge storing
them (server write -> row committed in PostgreSQL).

Every node gets its writes in turn, each with its own SourceTimestamp, so every write is a new
observation; the monitored items' queues (`QUEUE`) hold more than one node gets between two
publishes, so the server drops none.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from asyncua import Client, Server, ua
from asyncua.common.node import Node

PUBLISHING_MS = 50
QUEUE = 5_000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class OpcuaBench:
    def __init__(self, site: str, points: list[tuple[str, str, float]]) -> None:
        self.site = site
        self.points = points
        self.endpoint = f"opc.tcp://127.0.0.1:{_free_port()}/bench/"
        self._server: Server | None = None
        self._variables: list[tuple[Node, float]] = []
        # A day back: the rows of these writes are told from the MQTT phases' by their time.
        self._clock = datetime.now(UTC) - timedelta(days=1)
        self._cutoff = datetime.now(UTC) - timedelta(hours=12)
        self._written = 0

    def node_id(self, device: str, kind: str) -> str:
        return f"ns=2;s={device}.{kind}"

    async def start(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        index = await server.register_namespace("urn:safetyhub:bench")
        folder = await server.nodes.objects.add_object(index, "Bench")
        for device, kind, top in self.points:
            node = ua.NodeId.from_string(self.node_id(device, kind))
            variable = await folder.add_variable(
                node, f"{device}.{kind}", ua.Variant(0.0, ua.VariantType.Double)
            )
            self._variables.append((variable, top))
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()

    def file(self, workdir: Path) -> Path:
        nodes = [
            {"node": self.node_id(device, kind), "device": device, "kind": kind}
            for device, kind, _ in self.points
        ]
        subscription = {
            "publishing_interval_ms": PUBLISHING_MS,
            "sampling_interval_ms": 0,
            "queue_size": QUEUE,
            "nodes": nodes,
        }
        servers = [
            {"name": "bench", "endpoint": self.endpoint, "site": self.site, "subscriptions": [subscription]}
        ]
        path = workdir / "opcua.yaml"
        path.write_text(json.dumps({"servers": servers}))  # JSON is YAML
        return path

    async def write(self, count: int) -> None:
        """`count` value changes over the nodes in turn, each 1 ms after the previous one."""
        variables = self._variables
        # A node's next value always differs from its last (an equal one is no data change).
        steps = 89 if len(variables) % 89 else 97
        for _ in range(count):
            n = self._written
            self._written += 1
            variable, top = variables[n % len(variables)]
            self._clock += timedelta(milliseconds=1)
            value = ua.DataValue(
                ua.Variant((n % steps + 1) / (steps + 1) * top, ua.VariantType.Double),
                SourceTimestamp=self._clock,
                ServerTimestamp=self._clock,
            )
            await variable.write_value(value)
            if self._written % 200 == 0:
                await asyncio.sleep(0)  # let the server's publish loop run

    async def bare(self, count: int) -> float:
        """Value changes/s a bare asyncua subscription receives while `count` are written."""
        client = Client(self.endpoint)
        await client.connect()
        try:
            subscription = await client.create_subscription(PUBLISHING_MS, queue_maxsize=count * 2)
            nodes = [client.get_node(self.node_id(device, kind)) for device, kind, _ in self.points]
            await subscription.subscribe_data_change(nodes, queuesize=QUEUE, sampling_interval=0)
            for _ in nodes:  # each node's current value first
                await subscription.next_event(timeout=10)
            started = time.monotonic()
            writer = asyncio.create_task(self.write(count))
            received = 0
            while received < count:
                if await subscription.next_event(timeout=30) is None:
                    raise SystemExit(f"the bare client received {received} of {count} value changes")
                received += 1
            await writer
            return count / (time.monotonic() - started)
        finally:
            await client.disconnect()

    async def stored(
        self, conn: asyncpg.Connection, count: int, deadline_s: float = 120.0
    ) -> tuple[float, int]:
        """Value changes/s from the first write to the last row stored, and how many were stored."""

        async def rows() -> int:
            found: int = await conn.fetchval(
                "SELECT count(*) FROM observations WHERE time < $1", self._cutoff
            )
            return found

        before = await rows()
        started = time.monotonic()
        await self.write(count)
        deadline = time.monotonic() + deadline_s
        got = 0
        while time.monotonic() < deadline:
            got = await rows() - before
            if got >= count:
                break
            await asyncio.sleep(0.02)
        return count / (time.monotonic() - started), got
