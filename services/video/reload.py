"""Reload the `video:` section of the hub's config file when it changes, without a restart.

Every `reload_s` seconds the config file is fingerprinted by content (a Kubernetes ConfigMap
update swaps a symlink and may keep the mtime); on a change the whole file is loaded and checked
exactly as at start-up, and the new `video:` section is handed to the service, which starts,
stops or restarts only the cameras that changed. A file that no longer validates is logged with
its file, line and key (`video_config_reload_failed`), counted, and the cameras run on as
configured before: a typo must not switch a plant's cameras off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from prometheus_client import Counter

from services.common.errors import ConfigError
from services.common.logging import get_logger
from services.common.settings import HubConfig, load_config
from services.common.watch import Watcher, fingerprint
from services.video.config import VideoConfig

log = get_logger(__name__)

RELOADS = Counter(
    "safetyhub_video_config_reloads", "Reloads of the video config after a change, by result", ["result"]
)


def video_section(config: HubConfig) -> VideoConfig:
    section = getattr(config, "video", None)
    return section if isinstance(section, VideoConfig) else VideoConfig()


class VideoConfigReloader(Watcher):
    def __init__(
        self,
        path: Path,
        schema: type[HubConfig],
        apply: Callable[[VideoConfig], Awaitable[None]],
        *,
        interval: float,
    ) -> None:
        """`schema` is the hub's composed config type (the file is checked whole, as at start-up);
        `apply` puts a new, valid section in use."""
        super().__init__(name="video-config-reloader")
        self._interval = interval
        self._path = path
        self._schema = schema
        self._apply = apply
        self._loaded: str | None = None

    async def start(self) -> None:
        # What is in use now is what the file holds now (read at start-up).
        self._loaded = await asyncio.to_thread(fingerprint, [self._path])
        self.watch(self._interval)

    async def check(self) -> bool:
        """Reload if the file changed; True when a new section was put in use."""
        current = await asyncio.to_thread(fingerprint, [self._path])
        if current == self._loaded:
            return False
        # Remembered before loading: a bad edit is reported once, not every tick.
        self._loaded = current
        try:
            config, _ = await asyncio.to_thread(load_config, self._path, None, schema=self._schema)
        except ConfigError as err:
            RELOADS.labels("failed").inc()
            log.error(
                "video_config_reload_failed",
                kept="the last valid video config",
                file=err.file,
                line=err.line,
                key=err.key,
                error=str(err),
            )
            return False
        await self._apply(video_section(config))
        RELOADS.labels("ok").inc()
        return True
