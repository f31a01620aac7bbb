"""The demo's camera: the FCC 2 camera of the demo refinery, watched through the real video
pipeline.

The demo serves a simulated IP camera on a free loopback port (services/simulator/
camera_stream.py) whose picture shows vapour while the simulator's gas release in the camera's
zone runs, as thick as the release's level, and adds it to the hub's `video.cameras` (fire and
smoke rules, no object detector): the camera's `video.smoke` detections, snapshots and
`video.camera_health` come from the pictures, and the simulator sends no `video.*` reading of
that device. A config that already names a camera for that device keeps its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from services.common.settings import HubConfig
from services.common.sites.registry import SiteRegistry
from services.simulator import alarm_scenarios
from services.simulator.camera_stream import MjpegCamera
from services.simulator.plant import PlantSimulator
from services.video.app import VIDEO
from services.video.config import CameraConfig, DetectorConfig, FireConfig, RuleConfig, ZoneConfig

# What the camera analyses: below its caption (a caption is text, not the plant).
BELOW_CAPTION = [(0.0, 0.08), (1.0, 0.08), (1.0, 1.0), (0.0, 1.0)]
# The persistence the fire and smoke rules want, in seconds: each gust of the release's vapour
# is seen growing for some 10 s, so it is reported once, about every 20 s while the release runs.
RULE_SECONDS = 5.0
# Cost on 2 cores: pictures of 320 x 240 at 5 frames/s, 2 of them analysed a second.
ANALYSIS_FPS = 2.0
WIDTH = 320
# The upsets that release gas: the plant's random leaks and the scripted release.
_GAS_UPSETS = frozenset({"release", "gas_release"})


@dataclass(frozen=True, slots=True)
class DemoCamera:
    site: str
    device: str
    zone: str


def demo_camera(config: HubConfig, registry: SiteRegistry) -> DemoCamera | None:
    """The camera near the scripted gas release, when the demo refinery is among the sites and
    the config does not already name a camera for it."""
    site = registry.site(alarm_scenarios.SITE)
    if site is None or not alarm_scenarios.has_targets(site):
        return None
    device = registry.device(site.id, alarm_scenarios.RELEASE_CAMERA)
    if device is None:
        return None
    if any((c.site, c.device) == (site.id, device.id) for c in VIDEO.section(config).cameras):
        return None
    return DemoCamera(site=site.id, device=device.id, zone=device.zone)


def camera_config(camera: DemoCamera, source: str) -> CameraConfig:
    """The demo camera under `video.cameras`: fire and smoke by colour and behaviour, watched in
    the picture below the caption."""
    rules = [RuleConfig(rule="fire", seconds=RULE_SECONDS), RuleConfig(rule="smoke", seconds=RULE_SECONDS)]
    return CameraConfig(
        site=camera.site,
        device=camera.device,
        source=source,
        analysis_fps=ANALYSIS_FPS,
        width=WIDTH,
        detector=DetectorConfig(kind="none"),
        fire=FireConfig(),
        zones=[ZoneConfig(id=camera.zone, polygon=BELOW_CAPTION, rules=rules)],
    )


def with_demo_camera(config: HubConfig, camera: DemoCamera, source: str) -> HubConfig:
    """`config` with the demo camera added to its `video.cameras`."""
    section = VIDEO.section(config)
    cameras = [*section.cameras, camera_config(camera, source)]
    return msgspec.structs.replace(config, video=msgspec.structs.replace(section, cameras=cameras))


def gas_level(
    simulator: PlantSimulator, camera: DemoCamera, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> Callable[[], float]:
    """The level (0 to 1) of the gas released in the camera's zone now, as the simulator runs it."""

    def level() -> float:
        upsets = simulator.upsets(clock())
        return max(
            (
                u.level
                for u in upsets
                if u.kind in _GAS_UPSETS and u.site == camera.site and u.zone == camera.zone
            ),
            default=0.0,
        )

    return level


@contextlib.asynccontextmanager
async def camera_stream(camera: DemoCamera, level: Callable[[], float]) -> AsyncIterator[str]:
    """The simulated camera serving on a free loopback port; yields its stream's URL."""
    stream = MjpegCamera(level, label=camera.device.upper())
    url = await stream.start()
    try:
        yield url
    finally:
        await stream.stop()
