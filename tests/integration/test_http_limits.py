"""The HTTP listener's limits against a real hub: compressed bodies, slow and surplus connections."""

from __future__ import annotations

import asyncio
import gzip
import io
import time
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import msgspec
import pytest

from services.common.auth.keys import create_key
from services.common.settings import HttpConfig
from services.hub.bootstrap import Endpoints, Hub
from tests.conftest import REPO, RunningHub, hub_config

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


def gzip_bomb(inflated_mib: int) -> bytes:
    """A gzip body of about 1 KiB per MiB it inflates to (1 MB -> 1 GiB), made in milliseconds.

    After a full flush the compressor starts afresh, so every further MiB of zeros compresses
    to the same bytes: one segment, repeated. The trailer is missing; it is never reached.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    mib = bytes(1 << 20)
    first = compressor.compress(mib) + compressor.flush(zlib.Z_FULL_FLUSH)
    segment = compressor.compress(mib) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first + segment * (inflated_mib - 1)


def readings(n: int) -> bytes:
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    return msgspec.json.encode(
        [
            {
                "id": f"gz-{k}",
                "site": "ulsan-refinery",
                "device": "gd-cdu1-101",
                "kind": "gas.h2s",
                "value": float(k),
                "time": now,
            }
            for k in range(n)
        ]
    )


async def post_raw(
    hub: RunningHub, data: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, object], dict[str, str]]:
    headers = {"Content-Type": "application/json", **headers}
    async with hub.session.post(
        hub.url + "/v1/observations", data=io.BytesIO(data), headers=headers, compress=None
    ) as resp:
        body = await resp.read()
        return resp.status, (msgspec.json.decode(body) if body else {}), dict(resp.headers)


# ---------------------------------------------------------------- compressed bodies


async def test_compressed_bombs_before_authentication_cost_nothing_and_healthz_stays_fast(
    running_hub: RunningHub,
) -> None:
    bomb = gzip_bomb(1024)  # 1 MB that inflates to 1 GiB
    assert len(bomb) < 1_100_000
    latencies: list[float] = []
    stop = asyncio.Event()

    async def probe_health() -> None:
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                started = time.perf_counter()
                async with session.get(running_hub.url + "/healthz") as resp:
                    assert resp.status == 200
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.02)

    async def one_bomb() -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                running_hub.url + "/v1/observations",
                data=io.BytesIO(bomb),
                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            ) as resp,
        ):
            await resp.read()
            return resp.status

    prober = asyncio.create_task(probe_health())
    started = time.process_time()
    try:
        statuses = await asyncio.gather(*(one_bomb() for _ in range(10)))
    finally:
        stop.set()
        await prober
    cpu = time.process_time() - started  # the hub runs in this process

    assert statuses == [401] * 10
    # Inflating them would take several seconds of CPU (about 0.5 s per GiB on a fast core).
    assert cpu < 3.0, f"{cpu:.2f} s of CPU for ten refused bombs"
    assert latencies and max(latencies) < 1.0, f"/healthz took up to {max(latencies):.2f} s"


async def test_an_authenticated_bomb_stops_at_the_body_limit(running_hub: RunningHub) -> None:
    limit = running_hub.hub.config.ingest.max_body_mb * 1024 * 1024
    started = time.process_time()
    status, body, headers = await post_raw(
        running_hub, gzip_bomb(1024), {**running_hub.auth("gateway"), "Content-Encoding": "gzip"}
    )
    assert status == 413 and headers["Content-Type"].startswith(PROBLEM)
    assert "once inflated" in str(body["detail"]) and body["max_bytes"] == limit
    assert time.process_time() - started < 3.0


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("identity", lambda data: data),
    ],
)
async def test_compressed_posts_are_accepted(
    running_hub: RunningHub, encoding: str, compress: object
) -> None:
    assert callable(compress)
    status, body, _ = await post_raw(
        running_hub, compress(readings(3)), {**running_hub.auth("gateway"), "Content-Encoding": encoding}
    )
    assert status == 202, body
    assert body["accepted"] == ["gz-0", "gz-1", "gz-2"]


async def test_other_or_broken_encodings_are_refused(running_hub: RunningHub) -> None:
    auth = running_hub.auth("gateway")
    status, body, headers = await post_raw(running_hub, b"\x00", {**auth, "Content-Encoding": "br"})
    assert status == 415 and headers["Accept-Encoding"] == "gzip, deflate"
    assert "Content-Encoding 'br'" in str(body["detail"])
    status, body, _ = await post_raw(running_hub, b"not gzip at all", {**auth, "Content-Encoding": "gzip"})
    assert status == 400 and "corrupt" in str(body["detail"])
    truncated = gzip.compress(readings(3))[:-12]
    status, body, _ = await post_raw(running_hub, truncated, {**auth, "Content-Encoding": "gzip"})
    assert status == 400 and "truncated" in str(body["detail"])


# ---------------------------------------------------------------- slow and surplus connections

LIMITS = HttpConfig(port=0, header_timeout_s=1.0, body_timeout_s=1.5, max_connections=12)


@pytest.fixture
async def limited_hub(nats_url: str, database_url: str) -> AsyncIterator[tuple[Hub, str]]:
    hub = Hub(hub_config(http=LIMITS), REPO, Endpoints(nats_url, database_url))
    await hub.start()
    key = await create_key(hub.pool, tenant="ulsan-refining", role="gateway")
    yield hub, key
    await hub.stop()


async def connect(hub: Hub) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = hub.http_url.removeprefix("http://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> tuple[float, bytes]:
    """Read until the server closes the connection; how long that took and what it sent."""
    started = time.monotonic()
    received = await asyncio.wait_for(reader.read(), seconds)
    return time.monotonic() - started, received


GET = b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n"


async def test_a_connection_that_sends_half_its_headers_is_closed_within_the_bound(
    limited_hub: tuple[Hub, str],
) -> None:
    hub, _ = limited_hub
    reader, writer = await connect(hub)
    writer.write(b"POST /v1/observations HTTP/1.1\r\nHost: hub\r\nContent-")
    took, received = await closed_within(reader, 8.0)
    assert received.startswith(b"HTTP/1.1 408 ")
    assert took < LIMITS.header_timeout_s + 2.0
    writer.close()

    # Also a connection that never sends a byte, and the second request of a keep-alive one.
    silent, silent_writer = await connect(hub)
    took, received = await closed_within(silent, 8.0)
    assert received.startswith(b"HTTP/1.1 408 ")
    silent_writer.close()


async def test_keep_alive_clients_still_work_and_idle_time_is_not_a_header_timeout(
    limited_hub: tuple[Hub, str],
) -> None:
    hub, _ = limited_hub
    reader, writer = await connect(hub)
    for _ in range(2):
        writer.write(GET)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 ")
        length = int(
            next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
        )
        await reader.readexactly(length)
        # Idle between requests for longer than the header bound: the connection stays open.
        await asyncio.sleep(LIMITS.header_timeout_s * 2)
    # The next request, sent slowly but within the bound, is answered on the same connection.
    writer.write(GET[:10])
    await asyncio.sleep(LIMITS.header_timeout_s / 3)
    writer.write(GET[10:])
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200 ")
    writer.close()


async def test_connections_past_the_limit_are_refused_at_once(limited_hub: tuple[Hub, str]) -> None:
    hub, _ = limited_hub
    held = [await connect(hub) for _ in range(LIMITS.max_connections)]
    for _, writer in held:
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # half a request each
    await asyncio.sleep(0.1)
    reader, writer = await connect(hub)
    took, received = await closed_within(reader, 2.0)
    assert received.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in received
    assert took < 0.5
    writer.close()

    # Once the half requests are closed for their slowness, connections are taken again.
    for held_reader, held_writer in held:
        await closed_within(held_reader, 8.0)
        held_writer.close()
    reader, writer = await connect(hub)
    writer.write(GET)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200 ")
    writer.close()
    async with aiohttp.ClientSession() as session, session.get(hub.http_url + "/metrics") as resp:
        metrics = await resp.text()
    assert 'safetyhub_http_connections_refused_total{reason="max_connections"}' in metrics
    assert 'safetyhub_http_connections_refused_total{reason="header_timeout"}' in metrics


async def test_a_body_that_does_not_arrive_in_time_is_a_408(limited_hub: tuple[Hub, str]) -> None:
    hub, key = limited_hub
    reader, writer = await connect(hub)
    writer.write(
        b"POST /v1/observations HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\n".encode()
        + b"Content-Length: 1000\r\n\r\n[{"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LIMITS.body_timeout_s + 5)
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"application/problem+json" in head
    writer.close()
