"""The demo's camera through a real hub (real NATS with JetStream, real PostgreSQL): its MJPEG
stream, read by the video service as the demo configures it, gives no `video.smoke` while the
unit is quiet, and `video.smoke` observations with their snapshots once a release's level rises,
as the simulator's scripted release would raise it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import REGISTRY as METRICS

from services.hub.demo_camera import DemoCamera, camera_config
from services.simulator import alarm_scenarios
from services.simulator.camera_stream import MjpegCamera
from tests.conftest import eventually
from tests.integration.test_video_service import start

pytestmark = pytest.mark.integration

CAMERA = DemoCamera(site=alarm_scenarios.SITE, device=alarm_scenarios.RELEASE_CAMERA, zone="fcc-2")
NAME = f"{CAMERA.site}/{CAMERA.device}"
QUIET_FRAMES = 24  # frames sampled while quiet: three times the detector's window of 8


def sampled() -> float:
    """Frames the camera's worker has sampled so far (with or without motion)."""
    return sum(
        METRICS.get_sample_value("safetyhub_video_frames_total", {"camera": NAME, "outcome": outcome}) or 0.0
        for outcome in ("analysed", "still")
    )


async def test_the_demo_camera_sees_vapour_only_while_the_release_runs(
    nats_url: str, database_url: str
) -> None:
    level = 0.0
    stream = MjpegCamera(lambda: level, label=CAMERA.device.upper())
    url = await stream.start()
    running = await start(nats_url, database_url, [camera_config(CAMERA, url)])
    pool = running.hub.pool

    async def smoke() -> list[Any]:
        return list(
            await pool.fetch(
                "SELECT confidence, snapshot, detail FROM observations "
                "WHERE device = $1 AND kind = 'video.smoke'",
                CAMERA.device,
            )
        )

    try:
        before = sampled()

        async def quiet_seen() -> bool:
            return sampled() - before >= QUIET_FRAMES

        await eventually(quiet_seen, timeout=60.0, what=f"{QUIET_FRAMES} frames of the quiet unit sampled")
        assert await smoke() == []

        level = 1.0  # the release at its height: gusts of vapour from the compressor
        rows = await eventually(smoke, timeout=60.0, what="video.smoke from the demo camera")
        row = rows[0]
        detail = json.loads(row["detail"])
        assert detail["attributes"]["zone"] == CAMERA.zone
        assert detail["attributes"]["label"] == "smoke"
        # Where the vapour is: its source at the compressor, at x 125 of 320.
        box = detail["box"]
        assert box["x"] < 125 / 320 < box["x"] + box["width"]
        assert 0.5 <= row["confidence"] <= 1.0
        status, content_type, _ = await running.get(row["snapshot"] + "/blurred", "viewer")
        assert (status, content_type) == (200, "image/jpeg")
        # The picture itself is fine: no camera_health report of a frozen, covered or blinded view.
        health = await pool.fetchval(
            "SELECT count(*) FROM observations WHERE device = $1 AND kind = 'video.camera_health'",
            CAMERA.device,
        )
        assert health == 0
    finally:
        await running.session.close()
        await running.hub.stop()
        await stream.stop()
