"""The hub stops within its bounds: an open stream ends at once, a frozen PostgreSQL is given up on.

Before the staged shutdown, an open stream held `Hub.stop` for aiohttp's whole shutdown timeout
(15 s) and a frozen PostgreSQL held it forever (`pool.close()` waits for the server's goodbye).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web

from services.alarms.service import RELAY_GRACE_S as ALARMS_RELAY_GRACE_S
from services.common.auth.keys import create_key
from services.common.http.long_lived import LEAVE_GRACE_S, long_lived
from services.common.lifecycle import SHUTDOWN_BOUNDS
from services.escalation.engine import STOP_WAIT_S as DELIVERY_STOP_WAIT_S
from services.escalation.timer_loop import STOP_WAIT_S as TIMERS_STOP_WAIT_S
from services.feed.leadership import LEAD_GRACE_S as FEED_LEAD_GRACE_S
from services.feed.service import RELAY_GRACE_S as FEED_RELAY_GRACE_S
from services.feed.service import TIMERS_GRACE_S as FEED_TIMERS_GRACE_S
from services.hub.bootstrap import Endpoints, Hub
from services.incidents.service import RELAY_GRACE_S as INCIDENTS_RELAY_GRACE_S
from tests.conftest import REPO, hub_config
from tests.integration.private_postgres import PrivatePostgres

pytestmark = pytest.mark.integration

SLACK_S = 3.0  # for a loaded machine: each bound below is the design figure plus this
STREAM = "/test/stream"
GOODBYE = b"event: shutdown\ndata: the hub is stopping\n\n"


async def stream_forever(request: web.Request) -> web.StreamResponse:
    """An SSE-like response with no end of its own, as the incidents' live stream will be."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    async with long_lived(request) as stream:
        while True:
            await response.write(b"data: tick\n\n")
            await asyncio.sleep(0.05)
    if stream.closed_by_shutdown:
        await response.write(GOODBYE)
    await response.write_eof()
    return response


class HubWithStream(Hub):
    """A hub serving one test-only streaming route beside the real ones."""

    def _build_app(self, *args: Any, **kwargs: Any) -> web.Application:
        app = super()._build_app(*args, **kwargs)
        app.router.add_get(STREAM, stream_forever)
        return app


async def test_an_open_stream_ends_when_shutdown_starts_and_the_hub_stops_within_its_bound(
    nats_url: str, database_url: str
) -> None:
    hub = HubWithStream(hub_config(), REPO, Endpoints(nats_url, database_url))
    await hub.start()
    key = await create_key(hub.pool, tenant="ulsan-refining", role="viewer")
    url, headers = hub.http_url + STREAM, {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        assert resp.status == 200
        assert await resp.content.readuntil(b"\n\n") == b"data: tick\n\n"

        started = time.monotonic()
        with structlog.testing.capture_logs() as logs:
            stopping = asyncio.create_task(hub.stop())
            rest = await asyncio.wait_for(resp.content.read(), LEAVE_GRACE_S + SLACK_S)
            await asyncio.wait_for(stopping, SHUTDOWN_BOUNDS.total + SLACK_S)
        took = time.monotonic() - started

    assert rest.endswith(GOODBYE), "the client saw the stream end, with the handler's last event"
    # The old code waited aiohttp's 15 s shutdown timeout for the handler, then cancelled it.
    assert took < LEAVE_GRACE_S + SLACK_S, f"hub.stop() took {took:.1f} s with a stream open"
    (closed,) = [e for e in logs if e["event"] == "long_lived_closed"]
    assert closed["closed"] == 1 and closed["still_open"] == 0
    (complete,) = [e for e in logs if e["event"] == "shutdown_complete"]
    assert list(complete["stages"]) == ["intake", "consumers", "bus", "database"]
    assert complete["overran"] == [] and complete["failed"] == []


async def test_a_frozen_postgresql_holds_the_shutdown_no_longer_than_the_database_stage_bound(
    private_postgres: PrivatePostgres, nats_url: str
) -> None:
    hub = Hub(hub_config(), REPO, Endpoints(nats_url, await private_postgres.new_database()))
    await hub.start()
    assert hub.pool.get_size() > 0, "the pool holds connections that will have to say goodbye"

    with private_postgres.frozen():
        started = time.monotonic()
        with structlog.testing.capture_logs() as logs:
            # The old code's `pool.close()` never returned here; the outer bound keeps the test finite.
            await asyncio.wait_for(hub.stop(), SHUTDOWN_BOUNDS.total + SLACK_S)
        took = time.monotonic() - started

    # The database stage holds to its bound. Before it, a frozen database costs only the services'
    # own short waits on it: each outbox relay's grace, twice (its pass, then its cancellation),
    # the alarm engine's timer pass (1 s) and the feed's (its grace, twice), and the feed leader's
    # standing down (its grace, twice: the wait, then its cancellation); so each service added
    # with an outbox adds its own.
    frozen_waits = 2 * (ALARMS_RELAY_GRACE_S + INCIDENTS_RELAY_GRACE_S + FEED_RELAY_GRACE_S) + 1.0
    frozen_waits += 2 * FEED_TIMERS_GRACE_S + 2 * FEED_LEAD_GRACE_S
    # Escalation's two timers and its delivery loop stop side by side, each within its grace.
    frozen_waits += max(TIMERS_STOP_WAIT_S, DELIVERY_STOP_WAIT_S)
    (complete,) = [e for e in logs if e["event"] == "shutdown_complete"]
    assert complete["stages"]["database"] < SHUTDOWN_BOUNDS.database + SLACK_S, complete
    assert complete["stages"]["consumers"] < frozen_waits + SLACK_S, complete
    assert took < SHUTDOWN_BOUNDS.database + frozen_waits + SLACK_S, f"hub.stop() took {took:.1f} s"
    overran = [e for e in logs if e["event"] == "shutdown_stage_overran"]
    assert [(e["stage"], e["bound_s"]) for e in overran] == [("database", SHUTDOWN_BOUNDS.database)]
    assert hub.pool.is_closing(), "the pool was terminated, not left open"
