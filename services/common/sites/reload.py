"""Reload the site files when they change, so adding a detector does not need a restart.

Every `interval` seconds the configured site paths are expanded again (a new file matching a glob
counts) and fingerprinted by content (services/common/watch.py). On a change the files are loaded and
validated exactly as at start-up. A file that no longer validates is logged with its file, line and
key, counted, and the hub goes on with the last good registry: a typo in a site file must not take
intake down for the whole park.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from prometheus_client import Counter, Gauge

from services.common.errors import ConfigError
from services.common.logging import get_logger
from services.common.sites.registry import SiteRegistry
from services.common.watch import Watcher, fingerprint

log = get_logger(__name__)

RELOADS = Counter("safetyhub_sites_reloads", "Site file reloads after a change, by result", ["result"])
LOADED_AT = Gauge(
    "safetyhub_sites_loaded_timestamp_seconds",
    "When the site registry in use was loaded (Unix time)",
    multiprocess_mode="max",
)


class SiteReloader(Watcher):
    def __init__(
        self,
        files: Callable[[], list[Path]],
        install: Callable[[SiteRegistry], None],
        *,
        interval: float,
        loaded: str | None,
    ) -> None:
        """`files` expands the configured paths; `install` puts a new registry in use; `loaded`
        is the fingerprint of what is in use now (None: unknown, so the first check reloads)."""
        super().__init__(name="site-reloader")
        self._interval = interval
        self._files = files
        self._install = install
        self._loaded = loaded

    def start(self) -> None:
        LOADED_AT.set_to_current_time()
        self.watch(self._interval)

    async def check(self) -> bool:
        """Reload if the files changed; True when a new registry was put in use."""
        files = await asyncio.to_thread(self._files)
        current = await asyncio.to_thread(fingerprint, files)
        if current == self._loaded:
            return False
        # Remembered before loading: a bad file is reported once, not every tick; fixing it is
        # a change again.
        self._loaded = current
        if not files:
            # A glob matching nothing (a ConfigMap mid-update, a mistaken path) would otherwise
            # empty the registry and refuse every reading of the park.
            self._refused(error="no site file matches the configured paths")
            return False
        try:
            registry = await asyncio.to_thread(SiteRegistry.load, files)
        except ConfigError as err:
            self._refused(file=err.file, line=err.line, key=err.key, error=str(err))
            return False
        self._install(registry)
        RELOADS.labels("ok").inc()
        LOADED_AT.set_to_current_time()
        log.info("sites_reloaded", files=[str(f) for f in files], sites=len(registry.sites))
        return True

    def _refused(self, **why: object) -> None:
        RELOADS.labels("failed").inc()
        log.error("sites_reload_failed", kept="the last valid site registry", **why)
