"""A simulated IP camera: an HTTP MJPEG stream of the demo unit (camera_scene.unit_view) whose
vapour follows a level read when each frame is drawn, e.g. the simulator's gas release near it.

Served the way IP cameras serve MJPEG (`multipart/x-mixed-replace`, one JPEG a part, each with
its Content-Length), so the video service reads it as it reads a real camera, and a browser
shows it. Frames are drawn only while someone watches, once for all watchers, in a thread (the
drawing and the JPEG encoding must not hold up the event loop the hub runs on); a watcher that
falls behind gets the newest frame, never a backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable

import cv2
import numpy as np
from aiohttp import web

from services.common.logging import get_logger
from services.simulator.camera_scene import STREAM_FPS, VISIBLE_FROM, unit_view

log = get_logger(__name__)
BOUNDARY = "frame"
PATH = "/camera.mjpeg"
CONTENT_TYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"


def part(jpeg: bytes) -> bytes:
    """One JPEG as a part of the multipart stream: boundary, headers, the picture."""
    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    return head.encode("ascii") + jpeg + b"\r\n"


class FrameMaker:
    """The camera's frames one after the other, each drawn at the level given, JPEG encoded."""

    def __init__(self, *, label: str = "", seed: int = 7, quality: int = 80) -> None:
        self._label = label
        self._rng = np.random.default_rng(seed)
        self._quality = [cv2.IMWRITE_JPEG_QUALITY, quality]
        self.index = 0
        self._level = 0.0

    def next(self, level: float) -> bytes:
        if level >= VISIBLE_FROM > self._level:
            # The gusts count from when the vapour shows: the first is seen growing from nothing.
            self.index = 0
        self._level = level
        image = unit_view(level, self.index, self._rng, label=self._label)
        self.index += 1
        ok, jpeg = cv2.imencode(".jpg", image, self._quality)
        if not ok:  # an 8-bit BGR picture always encodes; a failure is a broken OpenCV
            raise RuntimeError("a camera frame could not be encoded as JPEG")
        return bytes(jpeg)


class MjpegCamera:
    """The stream on a loopback port; `level()` (0 to 1) is read for each frame."""

    def __init__(
        self, level: Callable[[], float], *, label: str = "", fps: float = STREAM_FPS, seed: int = 7
    ) -> None:
        self._level = level
        self._maker = FrameMaker(label=label, seed=seed)
        self._interval = 1.0 / fps
        self._latest = b""
        self._sequence = 0
        self._fresh = asyncio.Condition()
        self._watchers = 0
        self._producer: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen (port 0: a free one) and return the stream's URL."""
        app = web.Application()
        app.router.add_get(PATH, self._stream)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.url = f"http://{bound_host}:{bound_port}{PATH}"
        log.info("demo_camera_streaming", url=self.url)
        return self.url

    async def stop(self) -> None:
        if self._producer is not None:
            self._producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._producer
            self._producer = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _produce(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while self._watchers > 0:
            level = min(1.0, max(0.0, self._level()))
            jpeg = await asyncio.to_thread(self._maker.next, level)
            async with self._fresh:
                self._latest = jpeg
                self._sequence += 1
                self._fresh.notify_all()
            # Paced by the clock, not by the drawing: a slow frame shortens the wait for the next.
            next_at = max(next_at + self._interval, loop.time())
            await asyncio.sleep(next_at - loop.time())
        self._producer = None

    def _newer(self, seen: int) -> bool:
        return self._sequence > seen

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})
        await response.prepare(request)
        self._watchers += 1
        if self._producer is None:
            self._producer = asyncio.create_task(self._produce(), name="demo-camera-frames")
        seen = self._sequence
        try:
            while True:
                async with self._fresh:
                    await self._fresh.wait_for(functools.partial(self._newer, seen))
                    seen, jpeg = self._sequence, self._latest
                await response.write(part(jpeg))
        except ConnectionResetError:
            return response  # the watcher went away
        finally:
            self._watchers -= 1
