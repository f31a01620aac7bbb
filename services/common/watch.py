"""A file watcher's common part: fingerprint files by content, and check them every interval.

Content, not modification time, because a Kubernetes ConfigMap update swaps a symlink and a copy
can keep its mtime. A subclass says what a check does (`check`: load and validate what changed,
put it in use or report it, True when something new is in use); this class runs it every
`interval` seconds in a task that a failing check never ends.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
from collections.abc import Iterable
from pathlib import Path

from services.common.logging import get_logger

log = get_logger(__name__)


def fingerprint(files: Iterable[Path]) -> str:
    """A digest of which files there are and what they hold; an unreadable one (vanished between
    a glob and the read) is a change all the same."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path).encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError as err:
            digest.update(f"unreadable: {err.strerror}".encode())
        digest.update(b"\0")
    return digest.hexdigest()


class Watcher(abc.ABC):
    """Runs `check` every `interval` seconds between `watch` and `stop`."""

    def __init__(self, *, name: str) -> None:
        self._name = name
        self._task: asyncio.Task[None] | None = None

    @abc.abstractmethod
    async def check(self) -> bool:
        """Look for a change and act on it; True when something new was put in use."""

    def watch(self, interval: float) -> None:
        self._task = asyncio.create_task(self._run(interval), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check()
            except Exception:  # never let the watcher die: the next tick tries again
                log.exception("watch_check_failed", watcher=self._name)
