"""Long-lived blocks: ended when shutdown starts, left normally, and nothing else swallowed."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from services.common.http.long_lived import LongLived, LongLivedResponses


async def streaming(block: LongLived, after: list[str]) -> None:
    """A handler's loop: forever, until its block is closed; then it ends its response."""
    async with block:
        await asyncio.Event().wait()  # events that never come
    after.append("response ended")


async def test_close_all_ends_an_open_block_and_the_handler_carries_on_after_it() -> None:
    registry = LongLivedResponses()
    block, after = LongLived(registry), []
    handler = asyncio.create_task(streaming(block, after))
    await asyncio.sleep(0)  # the handler runs up to its first wait, inside its block
    assert registry.open == 1

    with structlog.testing.capture_logs() as logs:
        await asyncio.wait_for(registry.close_all(), 1.0)
    await asyncio.wait_for(handler, 1.0)

    assert after == ["response ended"] and block.closed_by_shutdown
    assert not handler.cancelled(), "the handler returned normally, so it could end its response"
    assert registry.open == 0
    assert [(e["closed"], e["still_open"]) for e in logs if e["event"] == "long_lived_closed"] == [(1, 0)]


async def test_a_block_entered_once_shutdown_began_ends_at_once() -> None:
    registry = LongLivedResponses()
    await registry.close_all()
    block, after = LongLived(registry), []

    await asyncio.wait_for(streaming(block, after), 1.0)

    assert after == ["response ended"] and block.closed_by_shutdown


async def test_a_timeout_of_the_handler_itself_is_not_taken_for_shutdown() -> None:
    registry = LongLivedResponses()
    with pytest.raises(TimeoutError):
        async with LongLived(registry) as block, asyncio.timeout(0.01):
            await asyncio.sleep(1.0)
    assert not block.closed_by_shutdown


async def test_a_handler_that_does_not_leave_is_waited_for_no_longer_than_the_grace() -> None:
    registry = LongLivedResponses(leave_grace_s=0.2)

    async def stubborn() -> None:
        async with LongLived(registry):
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                await asyncio.sleep(5.0)  # a last write to a client that reads nothing

    handler = asyncio.create_task(stubborn())
    await asyncio.sleep(0)  # the handler runs up to its first wait, inside its block
    assert registry.open == 1
    loop = asyncio.get_running_loop()
    started = loop.time()
    with structlog.testing.capture_logs() as logs:
        await registry.close_all()

    assert loop.time() - started < 0.2 + 1.0
    assert [(e["closed"], e["still_open"]) for e in logs if e["event"] == "long_lived_closed"] == [(1, 1)]
    handler.cancel()  # what aiohttp does to it once its own shutdown timeout has passed
    await asyncio.wait([handler])
