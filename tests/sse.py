"""A Server-Sent Events reader for tests: the events of an aiohttp response, as a browser's
EventSource would parse them (WHATWG HTML, "Interpreting an event stream"), comments included."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class SseEvent:
    """One block of the stream up to a blank line: an event, an id alone, or comments alone."""

    id: str | None = None
    event: str | None = None
    data: str | None = None
    comments: list[str] = field(default_factory=list)
    retry: int | None = None

    def json(self) -> Any:
        assert self.data, f"{self} has no data"
        return json.loads(self.data)


async def sse_blocks(response: aiohttp.ClientResponse) -> AsyncIterator[SseEvent]:
    block = SseEvent()
    data: list[str] = []
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                block.data = "\n".join(data)
            yield block
            block, data = SseEvent(), []
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "":
            block.comments.append(value)
        elif name == "data":
            data.append(value)
        elif name == "event":
            block.event = value
        elif name == "id":
            block.id = value
        elif name == "retry":
            block.retry = int(value)


class SseClient:
    """A connected stream with the blocks read so far and the last id seen (as EventSource keeps)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.blocks: list[SseEvent] = []
        self.last_id: str | None = None
        self.ended = False
        self._reader = asyncio.ensure_future(self._read())
        self._new = asyncio.Event()

    async def _read(self) -> None:
        try:
            async for block in sse_blocks(self.response):
                if block.id is not None:
                    self.last_id = block.id
                self.blocks.append(block)
                self._new.set()
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.ended = True
            self._new.set()

    @property
    def events(self) -> list[SseEvent]:
        return [b for b in self.blocks if b.event is not None]

    async def wait_for(self, predicate: Any, *, timeout: float = 20.0, what: str = "") -> None:
        """Until `predicate(self)` holds; fails after `timeout` s or if the stream ends first."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                if self.ended:
                    raise AssertionError(f"the stream ended before {what or predicate}")
                self._new.clear()
                await self._new.wait()

    async def close(self) -> None:
        self._reader.cancel()
        self.response.close()
        await asyncio.gather(self._reader, return_exceptions=True)
