"""The refusal log: one line per caller and reason per interval, counting what it left out."""

from __future__ import annotations

import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.common.http.middleware import CREDENTIAL_PREFIXES, RefusalLog, problem_middleware


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_repeated_refusal_is_logged_once_per_interval_with_the_count_left_out() -> None:
    clock = Clock()
    refusals = RefusalLog(interval=10.0, clock=clock)
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):
            refusals.refused("request_refused", who="key:abc", reason="forbidden", status=403)
            clock.now += 1.0
        refusals.refused("request_refused", who="key:other", reason="forbidden", status=403)
        refusals.refused("request_refused", who="key:abc", reason="unauthorized", status=401)
        clock.now = 10.5
        refusals.refused("request_refused", who="key:abc", reason="forbidden", status=403)

    assert [(e["who"], e["reason"], e["suppressed"]) for e in logs] == [
        ("key:abc", "forbidden", 0),
        ("key:other", "forbidden", 0),
        ("key:abc", "unauthorized", 0),
        ("key:abc", "forbidden", 4),
    ]
    assert all(e["log_level"] == "warning" and e["status"] in (401, 403) for e in logs)


def test_many_distinct_callers_do_not_grow_the_log_state_without_bound() -> None:
    refusals = RefusalLog(interval=10.0, max_keys=100, clock=Clock())
    with structlog.testing.capture_logs() as logs:
        for n in range(1_000):
            refusals.refused("request_refused", who=f"addr:10.0.{n // 256}.{n % 256}", reason="unauthorized")

    assert len(logs) == 1_000  # each caller's first refusal is logged
    assert len(refusals._seen) <= 100


async def test_a_refused_request_on_a_signed_link_logs_the_path_without_the_link_s_token() -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(middlewares=[problem_middleware])
    app[CREDENTIAL_PREFIXES] = ("/v1/ack/",)
    app.router.add_get("/v1/ack/{token}", page)
    token = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.c2lnbmF0dXJl"
    async with TestClient(TestServer(app)) as client:
        with structlog.testing.capture_logs() as logs:
            refused = await client.request("TRACE", f"/v1/ack/{token}")
    assert refused.status == 405
    assert [e["path"] for e in logs if e["event"] == "request_refused"] == ["/v1/ack/…"]
    assert token not in repr(logs)
