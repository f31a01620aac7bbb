"""The video service of the hub: its declaration and what it runs in a process."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from services.common.http.ops import ReadinessCheck
from services.common.kernel import PanelRow, Service, ServiceContext, ServiceInstance
from services.ingest.channel import OBSERVATIONS
from services.video import metrics
from services.video.api import SnapshotApi
from services.video.channel import SNAPSHOTS
from services.video.config import VideoConfig
from services.video.permissions import READ_SNAPSHOTS
from services.video.service import VideoService


class Video(ServiceInstance):
    def __init__(self, context: ServiceContext, config: VideoConfig) -> None:
        self._service = VideoService(context, config)
        self._api = SnapshotApi(context.pool)

    def add_routes(self, app: web.Application) -> None:
        self._api.add_routes(app)

    def peer_checks(self) -> Mapping[str, ReadinessCheck]:
        # Cameras are peers, like a plant's MQTT broker: /readyz names one that is down, but a
        # broken camera must not take the hub (its alarms, its API) out of service.
        return {"cameras": self._service.readiness} if self._service.active else {}

    async def start(self) -> None:
        await self._service.start()

    async def stop(self) -> None:
        await self._service.stop()


VIDEO: Service[VideoConfig] = Service(
    name="video",
    description="cameras -> motion, detectors, tracks, zone rules -> video.* observations, GET /v1/snapshots",
    config=VideoConfig,
    factory=Video,
    # Its detections are observations: `run video` ensures the stream ingest owns.
    publishes=(OBSERVATIONS,),
    # The blurred copies of its snapshots, for the city feed (services/video/channel.py).
    streams=(SNAPSHOTS,),
    migrations="services.video",
    permissions=(READ_SNAPSHOTS,),
    panel=(
        PanelRow("Video detections", metrics.DETECTIONS, by="rule"),
        PanelRow("Frames", metrics.FRAMES, by="outcome"),
        # What each camera achieves now (under its analysis_fps: the worker is overloaded).
        PanelRow("Analysed frames/s", metrics.ANALYSIS_FPS, by="camera"),
    ),
)
