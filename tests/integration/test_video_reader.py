"""Reading an HTTP MJPEG camera, served by a real aiohttp server here at 25 frames/s, 720p: frames
are read as JPEG packets and only those sampled are decoded (at the analysis width's scale); a
corrupt JPEG is counted and skipped; a stream that stalls is reported and read again once it
comes back."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

import cv2
import numpy as np
import pytest
from aiohttp import web

from services.video import metrics
from services.video.adapters.source import FrameSource
from services.video.config import CameraConfig, DetectorConfig, VideoConfig
from services.video.domain.health import Condition
from services.video.worker import AnyEvent, CameraHealth, CameraWorker, HealthEvent
from tests.conftest import eventually

FPS = 25


def yard_jpegs(count: int = 25) -> list[bytes]:
    """720p pictures of a textured yard, a square moving across it."""
    rng = np.random.default_rng(3)
    yard = cv2.GaussianBlur(rng.integers(30, 200, (720, 1280, 3), dtype=np.uint8), (0, 0), 4)
    jpegs = []
    for i in range(count):
        frame = yard.copy()
        cv2.rectangle(frame, (100 + 40 * i, 300), (160 + 40 * i, 480), (40, 200, 60), -1)
        jpegs.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
    return jpegs


class MjpegServer:
    """An IP camera's multipart MJPEG endpoint at 25 frames/s. `corrupt_every`: every n-th frame
    is broken (a JPEG start, then garbage); `serving` cleared: the connection stays open and
    nothing comes, as with a hung encoder."""

    def __init__(self) -> None:
        self.jpegs = yard_jpegs()
        self.serving = asyncio.Event()
        self.serving.set()
        self.corrupt_every = 0
        self.sent = 0
        self.connections = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/mjpeg", self._stream)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/mjpeg"

    async def stop(self) -> None:
        self.serving.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        self.connections += 1
        response = web.StreamResponse(headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame"})
        await response.prepare(request)
        rng = np.random.default_rng(5)
        started, i = time.monotonic(), 0
        while True:
            if not self.serving.is_set():
                await self.serving.wait()
                return response
            jpeg = self.jpegs[i % len(self.jpegs)]
            if self.corrupt_every and i % self.corrupt_every == self.corrupt_every - 1:
                jpeg = b"\xff\xd8" + rng.integers(0, 255, 4000, dtype=np.uint8).tobytes() + b"\xff\xd9"
            header = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
            try:
                await response.write(header + jpeg + b"\r\n")
            except ConnectionError:
                return response
            i += 1
            self.sent += 1
            # On the camera's clock: 25 a second on average, whatever the loop's hiccups.
            await asyncio.sleep(max(0.0, started + i / FPS - time.monotonic()))


@pytest.fixture
async def mjpeg() -> AsyncIterator[MjpegServer]:
    server = MjpegServer()
    await server.start()
    yield server
    await server.stop()


def count(name: str, outcome: str | None = None) -> float:
    """A video counter's value for one camera, read from the service's own metrics."""
    child = metrics.DECODED.labels(name) if outcome is None else metrics.FRAMES.labels(name, outcome)
    return sum(s.value for m in child.collect() for s in m.samples if s.name.endswith("_total"))


class Running:
    def __init__(self, camera: CameraConfig, settings: VideoConfig) -> None:
        self.events: list[AnyEvent] = []
        self._lock = threading.Lock()
        self.health = CameraHealth(camera.name)
        self.worker = CameraWorker(camera, "acme", settings, self._deliver, health=self.health)

    def _deliver(self, event: AnyEvent) -> None:
        with self._lock:
            self.events.append(event)

    def conditions(self) -> list[Condition]:
        with self._lock:
            return [e.condition for e in self.events if isinstance(e, HealthEvent)]

    async def stop(self) -> None:
        self.worker.request_stop()
        assert await asyncio.to_thread(self.worker.join, 10.0)


def camera(url: str, device: str, *, analysis_fps: float) -> CameraConfig:
    # No detector: what is measured here is reading and decoding.
    return CameraConfig(
        site="ulsan-refinery",
        device=device,
        source=url,
        analysis_fps=analysis_fps,
        detector=DetectorConfig(kind="none"),
    )


async def test_an_mjpeg_stream_is_read_as_jpeg_packets_and_decoded_at_the_analysis_scale(
    mjpeg: MjpegServer,
) -> None:
    source = FrameSource(mjpeg.url, is_stream=True, timeout_s=5.0, width=640)
    await asyncio.to_thread(source.open)
    try:
        assert source.raw, "an MJPEG stream is decoded frame by frame"
        await asyncio.to_thread(source.grab)
        frame = await asyncio.to_thread(source.retrieve)
        # 1280 x 720 decoded at half scale: the width analysed, with no resize after.
        assert frame is not None and frame.shape == (360, 640, 3)
    finally:
        source.close()


async def test_a_camera_that_turns_to_smaller_pictures_is_still_analysed_at_its_width(
    mjpeg: MjpegServer,
) -> None:
    source = FrameSource(mjpeg.url, is_stream=True, timeout_s=5.0, width=640)
    await asyncio.to_thread(source.open)
    try:
        # Reconfigured to 640 x 360: decoded whole from now on, not at half scale.
        mjpeg.jpegs = [cv2.imencode(".jpg", np.full((360, 640, 3), 90, np.uint8))[1].tobytes()]

        async def smaller() -> tuple[int, ...] | None:
            await asyncio.to_thread(source.grab)
            frame = await asyncio.to_thread(source.retrieve)
            assert frame is not None
            return frame.shape if frame.shape[1] != 640 or frame[0, 0, 0] == 90 else None

        assert await eventually(smaller, timeout=20.0, what="the smaller pictures read") == (360, 640, 3)
    finally:
        source.close()


async def test_a_25_fps_camera_analysed_at_2_decodes_about_2_frames_a_second(mjpeg: MjpegServer) -> None:
    config = camera(mjpeg.url, "cam-sampled", analysis_fps=2.0)
    running = Running(config, VideoConfig(stall_timeout_s=5.0))
    running.worker.start()
    try:

        async def reading() -> bool:
            return count(config.name, "skipped") > 0 and running.health.problem is None

        await eventually(reading, timeout=20.0, what="the camera read")
        decoded, skipped, sent = count(config.name), count(config.name, "skipped"), mjpeg.sent
        started = time.monotonic()

        async def window() -> bool:
            return mjpeg.sent - sent >= 4 * FPS  # four seconds of the camera's frames

        await eventually(window, timeout=30.0, what="100 frames sent")
        elapsed = time.monotonic() - started
        decoded = count(config.name) - decoded
        skipped = count(config.name, "skipped") - skipped
        # Sampled at 2 a second: about 8 decoded of 100 frames, the others let go undecoded.
        assert 2 <= decoded <= 2 * elapsed + 2, (decoded, elapsed)
        assert skipped >= 6 * decoded, (skipped, decoded)
        assert count(config.name, "corrupt") == 0
    finally:
        await running.stop()


async def test_a_corrupt_jpeg_is_counted_and_skipped(mjpeg: MjpegServer) -> None:
    # Every frame due (analysed at 50 a second): each tenth is garbage after a JPEG start.
    mjpeg.corrupt_every = 10
    config = camera(mjpeg.url, "cam-corrupt", analysis_fps=50.0)
    running = Running(config, VideoConfig(stall_timeout_s=5.0))
    running.worker.start()
    try:

        async def counted() -> bool:
            return count(config.name, "corrupt") >= 3

        await eventually(counted, timeout=30.0, what="corrupt frames counted")
        good = count(config.name, "still") + count(config.name, "analysed")
        assert good >= 9 * 3 - 9, "the frames around the corrupt ones were not analysed"
        # The camera reads on: a broken frame is no drop-out.
        assert running.health.problem is None
        assert count(config.name) > good
    finally:
        await running.stop()


async def test_a_stalled_stream_is_reported_and_read_again_when_it_comes_back(mjpeg: MjpegServer) -> None:
    config = camera(mjpeg.url, "cam-stall", analysis_fps=2.0)
    running = Running(config, VideoConfig(stall_timeout_s=1.0, retry_max_s=1.0))
    running.worker.start()
    try:

        async def decoding() -> bool:
            return count(config.name) >= 2

        await eventually(decoding, timeout=20.0, what="frames decoded")
        mjpeg.serving.clear()

        async def reported() -> str | None:
            return running.health.problem

        problem = await eventually(reported, timeout=20.0, what="the stall reported")
        assert "stopped delivering frames" in problem or "cannot open" in problem
        failures = metrics.CAMERA_FAILURES.labels(config.name, "SourceError")
        assert sum(s.value for m in failures.collect() for s in m.samples if s.name.endswith("_total")) >= 1

        before, connections = count(config.name), mjpeg.connections
        mjpeg.serving.set()

        async def resumed() -> bool:
            return running.health.problem is None and count(config.name) > before + 2

        await eventually(resumed, timeout=30.0, what="the stream read again")
        assert mjpeg.connections > connections
        assert running.conditions()[:1] == [Condition.OFFLINE]
    finally:
        await running.stop()
