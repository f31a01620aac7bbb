"""A camera over HTTP MJPEG, served by a real HTTP server here: its detections reach the store; when
it stalls it is reported (readiness, metrics) and retried while the hub runs; when it comes back
its detections flow again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import cv2
import pytest
from aiohttp import web

from services.video.config import (
    CameraConfig,
    DetectorConfig,
    RuleConfig,
    TrackerConfig,
    VideoConfig,
    ZoneConfig,
)
from tests.conftest import eventually
from tests.integration.test_video_service import LOWER_HALF, start
from tests.video_models import green_box_model, intrusion_frames

pytestmark = pytest.mark.integration


class MjpegCamera:
    """An IP camera's MJPEG endpoint at 20 frames/s that can be made to stall."""

    def __init__(self) -> None:
        self.jpegs = [cv2.imencode(".jpg", frame)[1].tobytes() for frame in intrusion_frames()]
        self.serving = asyncio.Event()
        self.serving.set()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/mjpeg", self._stream)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/mjpeg"

    async def stop(self) -> None:
        self.serving.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame"})
        await response.prepare(request)
        i = 0
        while True:
            if not self.serving.is_set():
                # Stalled: the connection stays open and nothing comes, as with a hung encoder.
                await self.serving.wait()
                return response
            jpeg = self.jpegs[i % len(self.jpegs)]
            header = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
            await response.write(header + jpeg + b"\r\n")
            i += 1
            await asyncio.sleep(0.05)


@pytest.fixture
async def mjpeg_camera() -> AsyncIterator[MjpegCamera]:
    camera = MjpegCamera()
    await camera.start()
    yield camera
    await camera.stop()


async def test_an_mjpeg_camera_that_stalls_is_reported_retried_and_resumes(
    nats_url: str, database_url: str, tmp_path: Path, mjpeg_camera: MjpegCamera
) -> None:
    config = CameraConfig(
        site="ulsan-refinery",
        device="cam-tf-501",
        source=mjpeg_camera.url,
        analysis_fps=10.0,
        detector=DetectorConfig(kind="onnx", model=str(green_box_model(tmp_path / "g.onnx")), input_size=64),
        tracker=TrackerConfig(min_hits=2),
        zones=[ZoneConfig(id="tank-bund", polygon=LOWER_HALF, rules=[RuleConfig(rule="intrusion")])],
    )
    running = await start(
        nats_url, database_url, [config], video=VideoConfig(stall_timeout_s=1.0, retry_max_s=1.0)
    )
    pool = running.hub.pool

    async def intrusions() -> int:
        count: int = await pool.fetchval("SELECT count(*) FROM observations WHERE kind = 'video.intrusion'")
        return count

    async def camera_check() -> str:
        _, checks = await running.readyz()
        return checks["video.cameras"]

    try:
        await eventually(intrusions, timeout=45.0, what="an intrusion seen through the MJPEG stream")
        assert await camera_check() == "ok"

        mjpeg_camera.serving.clear()

        async def reported() -> str | None:
            check = await camera_check()
            return check if "ulsan-refinery/cam-tf-501" in check else None

        problem = await eventually(reported, timeout=20.0, what="the stalled camera named by /readyz")
        assert "stopped delivering frames" in problem or "cannot open" in problem
        async with running.session.get(running.hub.http_url + "/metrics") as resp:
            assert 'safetyhub_video_camera_up{camera="ulsan-refinery/cam-tf-501"} 0.0' in await resp.text()
        # The rest of the hub answers meanwhile.
        status, _, _ = await running.get("/v1/sites", "viewer")
        assert status == 200

        before = await intrusions()
        mjpeg_camera.serving.set()

        async def resumed() -> bool:
            return await camera_check() == "ok" and await intrusions() > before

        await eventually(resumed, timeout=30.0, what="the camera back and new intrusions stored")

        # The drop-out and the return are observations too, in that order.
        async def conditions() -> list[str] | None:
            rows = await pool.fetch(
                "SELECT detail->'attributes'->>'condition' AS c FROM observations "
                "WHERE kind = 'video.camera_health' ORDER BY time"
            )
            found = [r["c"] for r in rows]
            return found if found[-1:] == ["ok"] else None

        assert await eventually(conditions, timeout=30.0, what="offline, then ok") == ["offline", "ok"]
    finally:
        await running.session.close()
        await running.hub.stop()
