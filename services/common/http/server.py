"""The HTTP listener: aiohttp's TCP site with the connection limits aiohttp does not have.

aiohttp closes a connection that is idle between requests (`keepalive_timeout`), but a client
that sends half its request headers and then nothing is not idle to it, and a fresh connection
gets the whole keep-alive time (an hour by default) to send its first request. A few thousand such
connections (a slowloris) hold sockets and memory indefinitely. So each connection is wrapped:

- its request headers must be complete within `header_timeout_s` of the connection opening, or of
  the first byte of a following request; otherwise it is answered 408 and closed;
- at most `max_connections` are open at once (per process); one more is answered 503 and closed
  at once, before anything of it is read;
- between requests aiohttp's own `keepalive_timeout` (`keepalive_timeout_s`) applies, and it
  also bounds a partial request pipelined behind another.

The body's time is bounded where a body is read (`services.common.http.body`). Only public
aiohttp API is used: the runner's protocol factory is wrapped, and the server's request handler
is wrapped to learn when a request's headers are complete (aiohttp calls it only then).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from prometheus_client import Counter

from services.common.http.middleware import REFUSALS
from services.common.http.problem import CONTENT_TYPE, TYPE_BASE
from services.common.logging import get_logger
from services.common.settings import HttpConfig

log = get_logger(__name__)

CLOSED = Counter(
    "safetyhub_http_connections_refused",
    "Connections answered and closed by the listener's limits, by reason",
    ["reason"],
)


def _raw_problem(status: int, reason: str, detail: str, extra_headers: str = "") -> bytes:
    """A complete HTTP/1.1 response for a connection that never reached aiohttp's handlers."""
    body = msgspec.json.encode(
        {
            "type": TYPE_BASE + reason.lower().replace(" ", "-"),
            "title": reason,
            "status": status,
            "detail": detail,
        }
    )
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n{extra_headers}\r\n"
    )
    return head.encode("ascii") + body


class _Connection(asyncio.Protocol):
    """One client connection: counts against the limit, and times its request headers."""

    def __init__(self, guard: ConnectionGuard, factory: Callable[[], RequestHandler]) -> None:
        self._guard = guard
        self._factory = factory
        self._inner: RequestHandler | None = None
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        if not self._guard.admit(self):
            self._refuse(
                _raw_problem(
                    503,
                    "Service Unavailable",
                    f"The hub holds its limit of {self._guard.config.max_connections} connections;"
                    " retry shortly",
                    "Retry-After: 1\r\n",
                )
            )
            return
        self._inner = self._factory()
        self._inner.connection_made(transport)
        self._arm()

    def _refuse(self, response: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(response)
            self._transport.close()

    def _arm(self) -> None:
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._guard.config.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_too_slow(self) -> None:
        self._timer = None
        if not self._awaiting_headers or self._transport is None:
            return
        peer = self._transport.get_extra_info("peername")
        REFUSALS.refused(
            "connection_closed",
            who=f"addr:{peer[0] if isinstance(peer, tuple) else 'unknown'}",
            reason="header-timeout",
            limit_s=self._guard.config.header_timeout_s,
        )
        timeout = self._guard.config.header_timeout_s
        CLOSED.labels("header_timeout").inc()
        self._refuse(
            _raw_problem(408, "Request Timeout", f"The request headers did not arrive within {timeout:g} s")
        )

    # Called by the request handler wrapper: headers complete, and the handler done.
    def request_started(self) -> None:
        self._awaiting_headers = False
        self._disarm()

    def request_finished(self) -> None:
        # The next request's clock starts with its first byte (see data_received); an idle
        # keep-alive connection is aiohttp's keepalive_timeout's to close.
        self._awaiting_headers = True

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if self._awaiting_headers and data:
            self._arm()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._inner is not None:
            self._inner.eof_received()
        return None  # close the transport on EOF, as aiohttp's own protocol does

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._guard.release(self)
        if self._inner is not None:
            self._inner.connection_lost(exc)
        self._transport = None


class ConnectionGuard:
    """Counts live connections of one listener and hands out the wrapped protocols."""

    def __init__(self, config: HttpConfig) -> None:
        self.config = config
        self._live: set[_Connection] = set()
        self.refused = 0

    @property
    def live(self) -> int:
        return len(self._live)

    def admit(self, connection: _Connection) -> bool:
        if len(self._live) >= self.config.max_connections:
            self.refused += 1
            CLOSED.labels("max_connections").inc()
            limit = self.config.max_connections
            REFUSALS.refused("connection_refused", who="listener", reason="max-connections", limit=limit)
            return False
        self._live.add(connection)
        return True

    def release(self, connection: _Connection) -> None:
        self._live.discard(connection)

    def wrap_handler(
        self, handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            transport = request.transport
            connection = transport.get_protocol() if transport is not None else None
            if not isinstance(connection, _Connection):
                return await handler(request)
            connection.request_started()
            try:
                return await handler(request)
            finally:
                connection.request_finished()

        return handle


def runner_options(config: HttpConfig) -> dict[str, Any]:
    """Keyword arguments for `web.AppRunner` that go with this listener."""
    return {
        # Bodies are inflated by the handler that reads them, after authentication and within
        # the body limit (services.common.http.body), never by aiohttp as they arrive.
        "auto_decompress": False,
        "keepalive_timeout": config.keepalive_timeout_s,
    }


class GuardedSite(web.TCPSite):
    """A TCP site whose connections are wrapped by a `ConnectionGuard`."""

    def __init__(self, runner: web.BaseRunner, config: HttpConfig, *, reuse_port: bool | None = None) -> None:
        super().__init__(runner, config.host, config.port, reuse_port=reuse_port)
        self.guard = ConnectionGuard(config)

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        if server is None:
            raise RuntimeError("the runner is not set up")
        # aiohttp calls the request handler once a request's headers are complete; every
        # connection reads it from the server when it is made, so this precedes listening.
        server.request_handler = self.guard.wrap_handler(server.request_handler)
        loop = asyncio.get_running_loop()
        guard = self.guard
        self._server = await loop.create_server(
            lambda: _Connection(guard, server),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port,
        )
        if self._server.sockets:
            self._bound_port = self._server.sockets[0].getsockname()[1]
        log.info(
            "http_listening",
            port=self.port,
            max_connections=guard.config.max_connections,
            header_timeout_s=guard.config.header_timeout_s,
        )
