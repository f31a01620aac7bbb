"""Long-lived responses (SSE streams, long polls), ended as soon as their process starts to stop.

aiohttp's runner stops the listener, then waits up to its shutdown timeout for every handler
still running before it cancels them; a stream's handler never ends by itself, so one open
stream would hold every shutdown for that whole timeout. A handler that streams wraps its loop
in `long_lived(request)`; when the app shuts down (aiohttp's `on_shutdown`, which the runner
sends after the listener stopped accepting and before it waits for handlers), the block is
cancelled and left normally, so the handler ends its response and returns. Its client sees the
stream end and reconnects, to an instance that is not stopping.

    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    async with long_lived(request) as stream:
        async for event in source:
            await response.write(event)
    # here when the source ended, or stream.closed_by_shutdown
    await response.write_eof()
    return response

The app must have `install_long_lived(app)` called on it (a service need not know by whom).
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from aiohttp import web

from services.common.logging import get_logger

log = get_logger(__name__)

# How long handlers get, once cancelled, to leave their block (they write a last line at most).
LEAVE_GRACE_S = 1.0


class LongLivedResponses:
    """The open long-lived blocks of one app; `close_all` ends them."""

    def __init__(self, leave_grace_s: float = LEAVE_GRACE_S) -> None:
        self._open: set[LongLived] = set()
        self._closing = False
        self._leave_grace_s = leave_grace_s

    @property
    def open(self) -> int:
        return len(self._open)

    async def close_all(self) -> None:
        """End every open block, and any entered from now on; wait (bounded) until they are left."""
        self._closing = True
        blocks = list(self._open)
        for block in blocks:
            block.close()
        if not blocks:
            return
        waits = [asyncio.ensure_future(block.left.wait()) for block in blocks]
        _, pending = await asyncio.wait(waits, timeout=self._leave_grace_s)
        for wait in pending:
            wait.cancel()
        log.info("long_lived_closed", closed=len(blocks), still_open=len(pending))

    def _enter(self, block: LongLived) -> None:
        self._open.add(block)
        if self._closing:  # a request that got in just before the listener stopped
            block.close()

    def _leave(self, block: LongLived) -> None:
        self._open.discard(block)


LONG_LIVED = web.AppKey("long_lived", LongLivedResponses)


def install_long_lived(app: web.Application) -> LongLivedResponses:
    """Give `app` a registry of long-lived responses, closed when the app shuts down."""
    registry = LongLivedResponses()
    app[LONG_LIVED] = registry

    async def close_long_lived(_: web.Application) -> None:
        await registry.close_all()

    app.on_shutdown.append(close_long_lived)
    return registry


class LongLived:
    """The streaming part of one handler: cancelled when shutdown starts, and then left normally.

    Built on `asyncio.timeout`, whose cancellation of the current task is the one that composes
    with other cancellations (a timeout nested inside, aiohttp cancelling the handler).
    """

    def __init__(self, registry: LongLivedResponses) -> None:
        self._registry = registry
        self._scope = asyncio.timeout(None)
        self.left = asyncio.Event()
        self.closed_by_shutdown = False

    def close(self) -> None:
        if not self.closed_by_shutdown:
            self.closed_by_shutdown = True
            self._scope.reschedule(asyncio.get_running_loop().time())

    async def __aenter__(self) -> LongLived:
        await self._scope.__aenter__()
        self._registry._enter(self)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        self._registry._leave(self)
        self.left.set()
        try:
            await self._scope.__aexit__(exc_type, exc, tb)
        except TimeoutError:
            # Raised only when our own cancellation ended the block: that is the normal way out.
            if self.closed_by_shutdown:
                return True
            raise
        return False


def long_lived(request: web.Request) -> LongLived:
    """The block for a handler that streams to `request`; see the module's docstring."""
    registry = request.config_dict.get(LONG_LIVED)
    if registry is None:
        raise RuntimeError("install_long_lived(app) was not called on this app")
    return LongLived(registry)
