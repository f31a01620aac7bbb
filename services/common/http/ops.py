"""/healthz (the process is alive), /readyz (its dependencies answer), /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from services.common.db.pool import bounded

# A readiness check returns None when fine, or a short reason why not.
ReadinessCheck = Callable[[], Awaitable[str | None]]


def _render_metrics() -> bytes:
    # Under `up --workers N` every worker writes its samples to PROMETHEUS_MULTIPROC_DIR; any of
    # them answers a scrape with the sum over all, so the figures do not depend on which one.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def add_ops_routes(app: web.Application, checks: Mapping[str, ReadinessCheck]) -> None:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                reason = await bounded(2.0, check())  # not wait_for: it waits out a frozen server
            except Exception as err:  # a check that cannot even run means "not ready"
                reason = f"{type(err).__name__}: {err}"
            results[name] = "ok" if reason is None else reason
        ready = all(v == "ok" for v in results.values())
        body = {"status": "ready" if ready else "not ready", "checks": results}
        return web.Response(
            status=200 if ready else 503, body=msgspec.json.encode(body), content_type="application/json"
        )

    async def metrics(_: web.Request) -> web.Response:
        payload = await asyncio.to_thread(_render_metrics)
        return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
