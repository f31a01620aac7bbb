"""A webhook receiver for the escalation tests: a real aiohttp server on a free loopback port
that verifies each delivery's signature with `standardwebhooks`, counts deliveries by
`webhook-id`, and answers as the test sets it: 2xx, 500, 410, 429 with Retry-After, a hang, a
closed connection or bytes that are not HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    webhook_id: str
    at: float  # time.monotonic()
    event: dict[str, Any]
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Receiver:
    secret: str = ""
    # What to answer, in order, then `then` for ever: an HTTP status, "hang", "close" or "garbage".
    script: list[Any] = field(default_factory=list)
    then: Any = 204
    retry_after: str | None = None
    delay_s: float = 0.0  # before answering a status
    url: str = ""
    received: list[Received] = field(default_factory=list)  # verified deliveries answered 2xx
    attempts: list[tuple[str, float, Any]] = field(default_factory=list)  # every request, answered
    unverified: int = 0
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def by_id(self) -> Counter[str]:
        return Counter(r.webhook_id for r in self.received)

    def events(self, change: str | None = None) -> list[dict[str, Any]]:
        return [r.event for r in self.received if change is None or r.event["type"].split(".")[3] == change]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        webhook_id = request.headers.get("webhook-id", "")
        answer = self.script.pop(0) if self.script else self.then
        self.attempts.append((webhook_id, time.monotonic(), answer))
        try:
            # A CAP alert is XML: its signature verified, its body kept as it came.
            xml = "xml" in request.headers.get("content-type", "")
            event = Webhook(self.secret).verify(body, dict(request.headers), json_parse=not xml) or {}
        except WebhookVerificationError:
            self.unverified += 1
            return web.Response(status=401)
        if answer == "hang":
            await self._release.wait()
            return web.Response(status=204)
        if answer == "close":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=204)
        if answer == "garbage":
            assert request.transport is not None
            request.transport.write(b"this is not HTTP\r\n\r\n")
            request.transport.close()
            return web.Response(status=204)
        status = int(answer)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if 200 <= status < 300:
            headers = {k.lower(): v for k, v in request.headers.items()}
            self.received.append(Received(webhook_id, time.monotonic(), event, headers, body))
        headers = {"Retry-After": self.retry_after} if self.retry_after and status in (429, 503) else None
        return web.Response(status=status, headers=headers)

    def release(self) -> None:
        """Let hanging requests answer (so the server can stop)."""
        self._release.set()


@contextlib.asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[Receiver]:
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url = f"http://127.0.0.1:{port}/hooks"
    try:
        yield receiver
    finally:
        receiver.release()
        await runner.cleanup()
