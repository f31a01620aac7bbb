"""Sends the simulated plant's readings to the hub's ingest API, like a site gateway would.

The hub is a black box here: only `POST /v1/observations` with a tenant's key. The loop survives
whatever the hub does (busy, down, refusing) and stops promptly when asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import aiohttp
from structlog.stdlib import BoundLogger

from services.common.logging import get_logger
from services.common.sites.registry import SiteRegistry
from services.simulator.plant import PlantSimulator, Reading

T = TypeVar("T")

_REQUEST_TIMEOUT_S = 10.0
_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 10.0
# A hub asking for longer than this is treated as asking for this: the loop must stay responsive.
_RETRY_AFTER_MAX_S = 30.0
_TRANSIENT = frozenset({502, 504})  # a proxy in front of a hub that is restarting
_PROBLEM_LOG_CHARS = 2000


@dataclass
class PosterStats:
    """Running totals, updated in place while `run_simulator` runs (the caller keeps a reference).

    `posted` counts requests the hub took (202), `accepted`/`rejected` the readings it accepted or
    refused in them, `failed` requests given up on (4xx other than 503, 5xx other than 503/502/504),
    `retries` re-sends of the same body after a 503, 502/504 or a connection error.
    """

    posted: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    retries: int = 0


async def run_simulator(
    base_url: str,
    keys: Mapping[str, str],
    simulator: PlantSimulator,
    registry: SiteRegistry,
    stop: asyncio.Event,
    *,
    interval_s: float = 1.0,
    session: aiohttp.ClientSession | None = None,
    stats: PosterStats | None = None,
    clock: Callable[[], datetime] | None = None,
) -> None:
    """Every `interval_s`, ticks `simulator` and posts each site's readings with its tenant's key.

    `keys` maps tenant id to bearer key. Returns when `stop` is set; a request in flight is
    abandoned then. Pass `stats` to watch the totals; `clock` replaces the wall clock in tests.
    """
    log = get_logger("safetyhub.simulator")
    now = clock or (lambda: datetime.now(UTC))
    owned = session is None
    http = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_REQUEST_TIMEOUT_S))
    sender = _Sender(
        http, base_url.rstrip("/") + "/v1/observations", stop, stats if stats is not None else PosterStats()
    )
    loop = asyncio.get_running_loop()
    missing_keys: set[str] = set()
    try:
        next_at = loop.time()
        while not stop.is_set():
            for site_id, readings in simulator.tick(now()).items():
                if stop.is_set():
                    return
                tenant = registry.tenant_of(site_id)
                key = keys.get(tenant) if tenant is not None else None
                if key is None:
                    if site_id not in missing_keys:  # say it once, not every second
                        missing_keys.add(site_id)
                        log.warning("simulator_no_key", site=site_id, tenant=tenant)
                    continue
                if readings:
                    await sender.deliver(key, readings, log.bind(site=site_id))
            # A fixed cadence, but after a long outage start afresh rather than firing a burst.
            next_at = max(next_at + interval_s, loop.time())
            await _sleep_or_stop(stop, next_at - loop.time())
    finally:
        if owned:
            await http.close()


class _Sender:
    """Posts bodies to one ingest URL, retrying as the hub asks, counting into `totals`."""

    def __init__(
        self, http: aiohttp.ClientSession, url: str, stop: asyncio.Event, totals: PosterStats
    ) -> None:
        self._http = http
        self._url = url
        self._stop = stop
        self.totals = totals

    async def deliver(self, key: str, readings: list[Reading], log: BoundLogger) -> None:
        """Posts one body until the hub takes it, refuses it for good, or `stop` is set."""
        body = json.dumps(readings).encode()
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        backoff = _BACKOFF_FIRST_S
        while not self._stop.is_set():
            try:
                answer = await _until_stopped(self._post(body, headers), self._stop)
            except (aiohttp.ClientError, OSError) as err:  # TimeoutError is an OSError
                log.warning(
                    "simulator_post_error", error=type(err).__name__, detail=str(err), retry_in_s=backoff
                )
                wait = backoff
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
            else:
                if answer is None:  # stopped while the request was in flight
                    return
                status, retry_after, text = answer
                if status == 202:
                    _count_answer(text, self.totals, log)
                    return
                if status == 503:
                    wait = _retry_after(retry_after)
                    log.info("simulator_hub_busy", retry_in_s=wait)
                elif status in _TRANSIENT:
                    log.warning("simulator_hub_unreachable", status=status, retry_in_s=backoff)
                    wait = backoff
                    backoff = min(backoff * 2, _BACKOFF_MAX_S)
                else:
                    self.totals.failed += 1
                    log.warning("simulator_post_refused", status=status, problem=_problem(text))
                    return
            self.totals.retries += 1
            if await _sleep_or_stop(self._stop, wait):
                return

    async def _post(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, str | None, str]:
        async with self._http.post(self._url, data=body, headers=headers) as response:
            return response.status, response.headers.get("Retry-After"), await response.text()


def _count_answer(text: str, totals: PosterStats, log: BoundLogger) -> None:
    totals.posted += 1
    try:
        answer = json.loads(text)
    except ValueError:
        log.warning("simulator_bad_answer", body=text[:_PROBLEM_LOG_CHARS])
        return
    accepted = answer.get("accepted", []) if isinstance(answer, dict) else []
    rejected = answer.get("rejected", []) if isinstance(answer, dict) else []
    totals.accepted += len(accepted)
    totals.rejected += len(rejected)
    if rejected:
        # The simulator should only send what the hub accepts: a rejection is a bug worth seeing.
        log.warning("simulator_readings_rejected", count=len(rejected), first=rejected[:3])


def _retry_after(value: str | None) -> float:
    """Seconds from a `Retry-After` header; the hub sends seconds, anything else waits 1 s."""
    try:
        seconds = float(value) if value is not None else 1.0
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.0), _RETRY_AFTER_MAX_S)


def _problem(text: str) -> object:
    try:
        decoded: object = json.loads(text)
    except ValueError:
        return text[:_PROBLEM_LOG_CHARS]
    return decoded


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Waits `seconds` or until `stop` is set; True if stopped."""
    if seconds > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


async def _until_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """Result of `work`, or None (with `work` cancelled) if `stop` is set first."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
            # Let the request unwind (release its connection) before the caller goes on.
            await asyncio.wait({task})
    return None if task.cancelled() else task.result()
