"""Cameras run in one process at a time (`up --workers N`, replicas): the holder of the video
service's PostgreSQL advisory lock. Two services on one database: one leads, the other stands by
and takes over when the first stops, so no camera is analysed by two processes at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest

from services.common.kernel import ServiceContext
from services.common.sites.registry import SiteRegistry
from services.hub.registry import REGISTRY
from services.video.config import VideoConfig
from services.video.service import VideoService
from tests.conftest import DEMO_SITES, eventually, hub_config
from tests.integration.test_video_service import camera
from tests.video_models import green_box_model, intrusion_clip

pytestmark = pytest.mark.integration


async def test_one_process_runs_the_cameras_and_another_takes_over(
    migrated_pool: object, nats_url: str, tmp_path: Path
) -> None:
    registry = SiteRegistry.load([DEMO_SITES])
    config = VideoConfig(
        cameras=[camera(intrusion_clip(tmp_path / "c.avi"), green_box_model(tmp_path / "g.onnx"))]
    )
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    for spec in REGISTRY.streams(hub_config()):
        await js.add_stream(name=spec.name, subjects=list(spec.subjects))
    context = ServiceContext(hub_config(), migrated_pool, nc, js, lambda: registry)  # type: ignore[arg-type]
    first, second = VideoService(context, config), VideoService(context, config)
    try:
        await first.start()
        await eventually(lambda: _true(first.leading), timeout=10.0, what="the first service leading")
        await second.start()
        await asyncio.sleep(3.0)  # more than a standby's retry interval
        assert (first.leading, second.leading) == (True, False)
        assert await second.readiness() is None  # standing by is not a fault

        await first.stop()
        await eventually(lambda: _true(second.leading), timeout=10.0, what="the second service taking over")
        assert not first.leading
    finally:
        await first.stop()
        await second.stop()
        await nc.close()


async def _true(value: bool) -> bool:
    return value
