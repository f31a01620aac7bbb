"""/readyz notices a frozen NATS or PostgreSQL, and answers within its bound even then."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.http.ops import READINESS_BOUND_S
from tests.conftest import eventually
from tests.integration.embedded_hub import EmbeddedHub, embedded_hub, frozen

pytestmark = pytest.mark.integration

# The bound plus room for a loaded test machine; the old probes took 15 s and more.
ANSWER_WITHIN_S = READINESS_BOUND_S + 2.0


async def ready_again(hub: EmbeddedHub) -> None:
    async def ready() -> bool:
        status, _, _ = await hub.readyz()
        return status == 200

    await eventually(ready, timeout=30, what="/readyz to be 200 after the server resumed")


# The kernel's checks and the alarm engine's (rules loaded, consumer running).
READY = {
    "nats": "ok",
    "postgres": "ok",
    "alarms.alarm_rules": "ok",
    "alarms.alarm_consumer": "ok",
    "incidents.incident_rules": "ok",
    "incidents.incident_consumer": "ok",
    "incidents.incident_live_stream": "ok",
    "feed.feed_consumer": "ok",
    "escalation.escalation_consumer": "ok",
    "escalation.delivery_engine": "ok",
    "escalation.escalation_timer": "ok",
}


async def test_a_frozen_nats_server_is_not_ready_within_the_bound(reachable_dir: Path) -> None:
    async with embedded_hub(reachable_dir / "data") as hub:
        assert (await hub.readyz())[:2] == (200, READY)
        restarts = await hub.metric("safetyhub_embedded_server_restarts_total", server="nats")

        with frozen(hub.nats_pid()):
            # Twice: a probe that finds the last one still waiting is bounded too.
            for _ in range(2):
                status, checks, took = await hub.readyz()
                assert status == 503
                assert checks["nats"] != "ok" and checks["postgres"] == "ok"
                assert took < ANSWER_WITHIN_S

        await ready_again(hub)
        # Frozen is not dead: the server was left alone.
        assert await hub.metric("safetyhub_embedded_server_restarts_total", server="nats") == restarts


async def test_a_frozen_postgres_is_not_ready_within_the_bound(reachable_dir: Path) -> None:
    async with embedded_hub(reachable_dir / "data") as hub:
        assert (await hub.readyz())[:2] == (200, READY)

        # The whole server: the postmaster and every backend.
        with frozen(hub.postgres_pid(), with_children=True):
            for _ in range(2):
                status, checks, took = await hub.readyz()
                assert status == 503
                assert checks["postgres"] != "ok" and checks["nats"] == "ok"
                assert took < ANSWER_WITHIN_S

        await ready_again(hub)
