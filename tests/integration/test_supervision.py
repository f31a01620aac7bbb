"""An embedded server that dies is started again on its port, and the hub works on through it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from pathlib import Path

import psutil
import pytest
import structlog

from services.common.embedded import Backoff, EmbeddedNats, Supervised
from tests.conftest import eventually
from tests.integration.embedded_hub import EmbeddedHub, embedded_hub, is_alive

pytestmark = pytest.mark.integration

RESTARTS = "safetyhub_embedded_server_restarts_total"
UP = "safetyhub_embedded_server_up"
# A server back "within a few seconds": the first back-off is 0.5 s, the rest is its start-up.
BACK_WITHIN_S = 15.0


async def restarted(hub: EmbeddedHub, server: str, before: float) -> float:
    """Wait until /metrics counts one more restart of `server`, and return how long that took."""
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def counted() -> bool:
        return await hub.metric(RESTARTS, server=server) == before + 1

    await eventually(counted, timeout=BACK_WITHIN_S, what=f"the restart of {server} to be counted")
    return loop.time() - started


async def test_a_killed_nats_server_is_restarted_and_posts_are_stored_again(reachable_dir: Path) -> None:
    async with embedded_hub(reachable_dir / "data") as hub:
        assert await hub.post(["before-0", "before-1"]) == 202
        before = await hub.metric(RESTARTS, server="nats") or 0.0
        old_pid = hub.nats_pid()

        os.kill(old_pid, signal.SIGKILL)
        took = await restarted(hub, "nats", before)

        assert took < BACK_WITHIN_S
        new_pid = hub.nats_pid()
        assert new_pid != old_pid and is_alive(new_pid)
        assert await hub.metric(UP, server="nats") == 1.0

        async def accepted() -> bool:
            return await hub.post(["after-0", "after-1"]) == 202

        # The hub's connection comes back by itself, on the URL it was given at start.
        await eventually(accepted, timeout=20, what="a post to be accepted after the restart")

        async def all_stored() -> bool:
            return await hub.stored(["before-0", "before-1", "after-0", "after-1"]) == 4

        await eventually(all_stored, timeout=20, what="readings before and after the restart stored")
        status, checks, _ = await hub.readyz()
        assert (status, checks["nats"], checks["postgres"]) == (200, "ok", "ok")


async def test_a_killed_postgres_is_restarted_with_its_data_and_the_store_writes_again(
    reachable_dir: Path,
) -> None:
    async with embedded_hub(reachable_dir / "data") as hub:
        first = [f"kept-{n}" for n in range(20)]
        assert await hub.post(first) == 202

        async def first_stored() -> bool:
            return await hub.stored(first) == len(first)

        await eventually(first_stored, what="the first readings stored")
        before = await hub.metric(RESTARTS, server="postgres") or 0.0
        old_pid = hub.postgres_pid()

        os.kill(old_pid, signal.SIGKILL)
        took = await restarted(hub, "postgres", before)

        assert took < BACK_WITHIN_S
        assert hub.postgres_pid() != old_pid
        assert await hub.metric(UP, server="postgres") == 1.0

        later = [f"later-{n}" for n in range(20)]

        async def accepted() -> bool:
            return await hub.post(later) == 202

        await eventually(accepted, timeout=20, what="a post to be accepted after the restart")

        async def all_stored() -> bool:
            # Through the hub's own pool, on the DSN it was given at start.
            return await hub.stored(first + later) == len(first) + len(later)

        await eventually(all_stored, timeout=30, what="the data kept and the new readings stored")

        async def ready() -> bool:
            status, _, _ = await hub.readyz()
            return status == 200

        await eventually(ready, timeout=20, what="/readyz to be 200 again")


async def test_a_server_being_stopped_is_not_restarted(reachable_dir: Path) -> None:
    data = reachable_dir / "data"
    # A back-off this short would restart it at once, were the watcher still watching.
    supervised = Supervised(EmbeddedNats(data), "nats", Backoff(first_s=0.01))
    await supervised.start()
    pid = supervised.pid
    assert pid is not None and supervised.up

    await supervised.stop()

    assert not is_alive(pid)
    assert not supervised.up
    loop = asyncio.get_running_loop()
    watch_until = loop.time() + 1.0  # a hundred times the back-off
    while loop.time() < watch_until:
        assert supervised.pid is None and not servers_on(data)
        await asyncio.sleep(0.05)
    assert supervised.restarts == 0
    await supervised.stop()  # idempotent


async def test_a_failed_restart_is_retried_with_a_longer_wait(reachable_dir: Path) -> None:
    supervised = Supervised(EmbeddedNats(reachable_dir / "data"), "nats")
    port = int((await supervised.start()).rsplit(":", 1)[1])
    try:
        with structlog.testing.capture_logs() as logs:
            pid = supervised.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            # Someone else takes the port before the first attempt (0.5 s after the death).
            squatter = await eventually(lambda: bind(port), timeout=5, what="the port to be free")
            try:

                async def attempt_failed() -> bool:
                    return any(e["event"] == "embedded_server_restart_failed" for e in logs)

                await eventually(attempt_failed, timeout=15, what="a restart attempt to fail")
                assert not supervised.up and supervised.restarts == 0
            finally:
                squatter.close()

            async def back_up() -> bool:
                return supervised.up

            await eventually(back_up, timeout=15, what="the server back once the port is free")
        assert supervised.restarts == 1
        events = [e for e in logs if e["event"].startswith("embedded_server_")]
        assert [e["event"] for e in events[:2]] == ["embedded_server_died", "embedded_server_restart_failed"]
        assert events[0]["reason"] == "SIGKILL" and events[0]["restart_in_s"] == 0.5
        assert events[1]["retry_in_s"] == 1.0
        assert events[-1]["event"] == "embedded_server_restarted"
    finally:
        await supervised.stop()


async def bind(port: int) -> socket.socket | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    sock.listen()
    return sock


def servers_on(data: Path) -> list[int]:
    found = []
    where = str(data.resolve())
    for proc in psutil.process_iter(["name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["name"] == "nats-server" and where in " ".join(proc.info["cmdline"] or []):
                found.append(proc.pid)
    return found
