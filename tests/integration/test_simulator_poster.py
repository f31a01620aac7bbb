"""The simulator's poster against a stand-in ingest API: retries as told, survives, stops promptly."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.common.sites import Device, LatLon, Measure, Site, SiteRegistry, SitesFile, Tenant, Zone
from services.simulator.plant import PlantSimulator
from services.simulator.poster import PosterStats, run_simulator

KEYS = {"acme": "key-acme"}  # `other` has no key: its site must be skipped, not posted
DEADLINE_S = 5.0


def _site(id_: str, tenant: str) -> Site:
    return Site(
        id=id_,
        tenant=tenant,
        name=id_,
        kind="plant",
        timezone="Asia/Seoul",
        location=LatLon(lat=35.4768, lon=129.3529),
        zones=(
            Zone(
                id="cdu-1",
                name="CDU 1",
                hazard="flammable",
                polygon=((35.0, 129.0), (35.1, 129.0), (35.0, 129.1)),
            ),
        ),
        devices=(
            Device(
                id="gd-101",
                zone="cdu-1",
                type="gas_detector",
                position=LatLon(lat=35.05, lon=129.05),
                measures=(Measure(kind="gas.h2s", unit="ppm"), Measure(kind="gas.lel", unit="%LEL")),
            ),
        ),
    )


def _registry() -> SiteRegistry:
    tenants = (Tenant(id="acme", name="Acme"), Tenant(id="other", name="Other"))
    doc = SitesFile(
        version=1, tenants=tenants, sites=(_site("acme-refinery", "acme"), _site("other-plant", "other"))
    )
    return SiteRegistry.from_files([("test.yaml", doc, None)])


def _clock() -> Callable[[], datetime]:
    ticks = iter(range(1_000_000))
    start = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
    return lambda: start + timedelta(seconds=next(ticks))


@dataclass
class FakeIngest:
    """Answers each request with the next of `answers` (the last one repeats) and records what came."""

    answers: list[Callable[[list[object]], Awaitable[web.Response]]]
    bodies: list[bytes] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bodies.append(body)
        self.auth.append(request.headers.get("Authorization", ""))
        answer = self.answers[min(len(self.bodies) - 1, len(self.answers) - 1)]
        return await answer(json.loads(body))


async def busy(_: list[object]) -> web.Response:
    problem = {"type": "about:blank", "title": "Service Unavailable", "status": 503}
    return web.json_response(
        problem, status=503, headers={"Retry-After": "0"}, content_type="application/problem+json"
    )


async def busy_for_long(_: list[object]) -> web.Response:
    return web.json_response({"status": 503}, status=503, headers={"Retry-After": "30"})


async def accepted(items: list[object]) -> web.Response:
    return web.json_response({"accepted": [f"id-{i}" for i in range(len(items))], "rejected": []}, status=202)


async def forbidden(_: list[object]) -> web.Response:
    problem = {"type": "about:blank", "title": "Forbidden", "status": 403, "detail": "not your site"}
    return web.json_response(problem, status=403, content_type="application/problem+json")


async def hang(_: list[object]) -> web.Response:
    await asyncio.sleep(60)
    return web.Response(status=500)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[FakeIngest], Awaitable[str]]]:
    servers: list[TestServer] = []

    async def start(fake: FakeIngest) -> str:
        app = web.Application()
        app.router.add_post("/v1/observations", fake.handle)
        server = TestServer(app, port=0)
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/"))

    yield start
    for server in servers:
        await server.close()


async def _until(condition: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def _start(
    base_url: str, stop: asyncio.Event, stats: PosterStats, interval_s: float = 0.05
) -> asyncio.Task[None]:
    registry = _registry()
    return asyncio.create_task(
        run_simulator(
            base_url,
            KEYS,
            PlantSimulator(registry),
            registry,
            stop,
            interval_s=interval_s,
            stats=stats,
            clock=_clock(),
        )
    )


async def _stop(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    await asyncio.wait_for(task, timeout=1.0)


async def test_a_503_is_retried_with_the_same_body_after_retry_after(
    serve: Callable[[FakeIngest], Awaitable[str]],
) -> None:
    fake = FakeIngest([busy, accepted])
    stop, stats = asyncio.Event(), PosterStats()
    task = _start(await serve(fake), stop, stats)
    await _until(lambda: stats.posted >= 2)
    await _stop(task, stop)
    assert fake.bodies[1] == fake.bodies[0]
    assert fake.bodies[2] != fake.bodies[0]  # the next tick is new readings
    assert set(fake.auth) == {"Bearer key-acme"}
    first = json.loads(fake.bodies[0])
    assert {item["site"] for item in first} == {"acme-refinery"}
    assert {(item["device"], item["kind"]) for item in first} == {
        ("gd-101", "gas.h2s"),
        ("gd-101", "gas.lel"),
    }
    assert stats.retries == 1
    assert stats.accepted == 2 * stats.posted
    assert stats.failed == 0


async def test_a_refusal_is_counted_and_the_next_tick_still_posts(
    serve: Callable[[FakeIngest], Awaitable[str]],
) -> None:
    fake = FakeIngest([forbidden, accepted])
    stop, stats = asyncio.Event(), PosterStats()
    task = _start(await serve(fake), stop, stats)
    await _until(lambda: stats.posted >= 1)
    await _stop(task, stop)
    assert stats.failed == 1
    assert stats.retries == 0
    assert fake.bodies[1] != fake.bodies[0]  # refused bodies are not sent again


@pytest.mark.parametrize("answer", [busy_for_long, hang], ids=["retry-after-30", "request-in-flight"])
async def test_stop_ends_it_promptly_whatever_the_hub_does(
    serve: Callable[[FakeIngest], Awaitable[str]], answer: Callable[[list[object]], Awaitable[web.Response]]
) -> None:
    fake = FakeIngest([answer])
    stop, stats = asyncio.Event(), PosterStats()
    task = _start(await serve(fake), stop, stats)
    await _until(lambda: len(fake.bodies) >= 1)
    await _stop(task, stop)
    assert stats.posted == 0


async def test_an_unreachable_hub_is_retried_without_crashing() -> None:
    # A port that was free a moment ago: connecting to it is refused.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stop, stats = asyncio.Event(), PosterStats()
    task = _start(f"http://127.0.0.1:{port}/", stop, stats)
    await _until(lambda: stats.retries >= 1)
    assert not task.done()
    await _stop(task, stop)
    assert stats.posted == 0
