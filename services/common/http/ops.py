"""/healthz (the process is alive), /readyz (its dependencies answer), /metrics (Prometheus).

/readyz answers within its bound whatever the dependencies do. Its checks run concurrently; one
that has not answered by `READINESS_BOUND_S` counts as "not ready" and is left to finish in the
background rather than cancelled and awaited: cancelling a query against a frozen PostgreSQL waits
for a cancel request the server never reads. While a check is still running, later probes wait for
that same run instead of starting another, so a frozen server never piles up probes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

# A readiness check returns None when fine, or a short reason why not. It should bound its own
# waits by READINESS_BOUND_S too, so that a run left behind ends soon after.
ReadinessCheck = Callable[[], Awaitable[str | None]]
# How long /readyz waits for its checks (documented in the README and openapi.yaml).
READINESS_BOUND_S = 1.5
_CLEANUP_GRACE_S = 5.0


def _render_metrics() -> bytes:
    # Under `up --workers N` every worker writes its samples to PROMETHEUS_MULTIPROC_DIR; any of
    # them answers a scrape with the sum over all, so the figures do not depend on which one.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


class Readiness:
    """Runs the checks for /readyz, at most one run of each at a time, answering within `bound`."""

    def __init__(self, checks: Mapping[str, ReadinessCheck], bound: float = READINESS_BOUND_S) -> None:
        self._checks = checks
        self._bound = bound
        # The run in progress per check; a reference kept so it is not garbage collected meanwhile.
        self._running: dict[str, asyncio.Task[str]] = {}

    async def probe(self) -> dict[str, str]:
        """Per check, "ok" or the reason why not."""
        runs = {name: self._run(name) for name in self._checks}
        if runs:
            await asyncio.wait(runs.values(), timeout=self._bound)
        return {name: self._result(task) for name, task in runs.items()}

    def _result(self, task: asyncio.Task[str]) -> str:
        if not task.done():
            return f"no answer within {self._bound:g} s"
        return "stopped" if task.cancelled() else task.result()

    def _run(self, name: str) -> asyncio.Task[str]:
        task = self._running.get(name)
        if task is None or task.done():
            task = asyncio.create_task(_outcome(self._checks[name]), name=f"readyz-{name}")
            self._running[name] = task
        return task

    async def close(self) -> None:
        """At shutdown: stop the runs still waiting on a server, for a bounded time."""
        left = [task for task in self._running.values() if not task.done()]
        self._running.clear()
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=_CLEANUP_GRACE_S)


async def _outcome(check: ReadinessCheck) -> str:
    try:
        reason = await check()
    except Exception as err:  # a check that cannot even run means "not ready"
        return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return "ok" if reason is None else reason


def add_ops_routes(
    app: web.Application,
    checks: Mapping[str, ReadinessCheck],
    *,
    bound: float = READINESS_BOUND_S,
    peers: Mapping[str, ReadinessCheck] | None = None,
) -> None:
    """`peers` are reported by /readyz but do not make it answer 503 (see ServiceInstance)."""
    readiness = Readiness(checks, bound)
    peer_readiness = Readiness(peers or {}, bound)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        results, peer_results = await asyncio.gather(readiness.probe(), peer_readiness.probe())
        ready = all(v == "ok" for v in results.values())
        body: dict[str, object] = {"status": "ready" if ready else "not ready", "checks": results}
        if peer_results:
            body["peers"] = peer_results
        return web.Response(
            status=200 if ready else 503, body=msgspec.json.encode(body), content_type="application/json"
        )

    async def close_readiness(_: web.Application) -> None:
        await readiness.close()
        await peer_readiness.close()

    async def metrics(_: web.Request) -> web.Response:
        payload = await asyncio.to_thread(_render_metrics)
        return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.on_cleanup.append(close_readiness)
