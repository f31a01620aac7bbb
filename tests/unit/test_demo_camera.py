"""The demo's camera: its picture (a quiet unit, vapour as thick as the release's level), its MJPEG
framing as served over a real loopback connection, the simulator leaving the filmed camera's
`video.*` kinds to the pictures, and the hub config the demo adds it to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import cv2
import msgspec
import numpy as np
import pytest

from services.common.sites.registry import SiteRegistry
from services.hub.demo_camera import DemoCamera, camera_config, demo_camera, gas_level, with_demo_camera
from services.simulator import alarm_scenarios
from services.simulator.camera_scene import (
    GUST_FADE,
    GUST_FRAMES,
    GUST_GROW,
    HEIGHT,
    VISIBLE_FROM,
    WIDTH,
    Image,
    unit,
    unit_view,
)
from services.simulator.camera_stream import BOUNDARY, CONTENT_TYPE, MjpegCamera, part
from services.simulator.plant import PlantSimulator, ScenarioConfig
from services.video.app import VIDEO
from tests.conftest import DEMO_SITES, hub_config

CAMERA = DemoCamera(site=alarm_scenarios.SITE, device=alarm_scenarios.RELEASE_CAMERA, zone="fcc-2")
START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def vapour_pixels(frame: Image) -> int:
    """Pixels that moved toward the vapour's grey, past the sensor noise, from the still unit."""
    still = unit("CAM").astype(np.int16)
    shift = np.abs(frame.astype(np.int16) - still).max(axis=2)
    return int(np.count_nonzero(shift > 20))


def test_a_quiet_unit_has_no_vapour_in_any_frame_of_a_gust() -> None:
    rng = np.random.default_rng(1)
    for index in range(0, GUST_FRAMES, 5):
        frame = unit_view(0.0, index, rng, label="CAM")
        assert frame.shape == (HEIGHT, WIDTH, 3)
        assert vapour_pixels(frame) == 0, index


def test_a_release_draws_vapour_growing_through_a_gust_and_thicker_at_a_higher_level() -> None:
    rng = np.random.default_rng(1)
    early, late = GUST_GROW // 4, GUST_GROW - 1
    full = [vapour_pixels(unit_view(1.0, index, rng, label="CAM")) for index in (early, late)]
    assert 0 < full[0] < full[1]  # a gust grows
    assert full[1] > 0.05 * WIDTH * HEIGHT
    thin = vapour_pixels(unit_view(0.6, late, rng, label="CAM"))
    assert 0 < thin < full[1]
    # Early in a release the vapour is too thin to see: the gas detectors alarm first.
    assert vapour_pixels(unit_view(VISIBLE_FROM - 0.1, late, rng, label="CAM")) == 0
    # Between gusts the yard clears, so the next one is seen growing again.
    assert vapour_pixels(unit_view(1.0, GUST_GROW + GUST_FADE + 1, rng, label="CAM")) == 0


def test_a_part_of_the_stream_is_one_jpeg_with_its_length() -> None:
    jpeg = b"\xff\xd8 not really a picture \xff\xd9"
    assert part(jpeg) == (
        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
        + jpeg
        + b"\r\n"
    )


async def read_parts(url: str, count: int) -> list[bytes]:
    """`count` JPEGs from a multipart MJPEG stream, parsed by their Content-Length."""
    jpegs = []
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == CONTENT_TYPE
        while len(jpegs) < count:
            assert await resp.content.readline() == f"--{BOUNDARY}\r\n".encode()
            headers = {}
            while (line := await resp.content.readline()) != b"\r\n":
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            assert headers["content-type"] == "image/jpeg"
            jpegs.append(await resp.content.readexactly(int(headers["content-length"])))
            assert await resp.content.readexactly(2) == b"\r\n"
    return jpegs


async def test_the_stream_serves_pictures_that_follow_the_level() -> None:
    level = 0.0
    camera = MjpegCamera(lambda: level, label="CAM", fps=20.0)
    url = await camera.start()
    try:
        assert url.startswith("http://127.0.0.1:")
        quiet = await read_parts(url, 3)
        level = 1.0
        # The gusts count from the release's start: well into the first one, vapour shows.
        released = (await read_parts(url, GUST_GROW // 2))[-1]
    finally:
        await camera.stop()
    for jpeg in quiet:
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (HEIGHT, WIDTH, 3)
        assert vapour_pixels(image) < 0.02 * WIDTH * HEIGHT  # JPEG artefacts at the edges at most
    image = cv2.imdecode(np.frombuffer(released, np.uint8), cv2.IMREAD_COLOR)
    assert vapour_pixels(image) > 0.05 * WIDTH * HEIGHT


def registry() -> SiteRegistry:
    return SiteRegistry.load([DEMO_SITES])


def test_a_filmed_camera_gets_no_simulated_video_readings_the_others_do() -> None:
    plain = PlantSimulator(registry())
    filmed = PlantSimulator(registry(), filmed=[(CAMERA.site, CAMERA.device)])

    def video_devices(sim: PlantSimulator) -> set[str]:
        readings = sim.tick(START)[CAMERA.site]
        return {str(r["device"]) for r in readings if str(r["kind"]).startswith("video.")}

    assert CAMERA.device in video_devices(plain)
    others = video_devices(filmed)
    assert CAMERA.device not in others
    assert others == video_devices(plain) - {CAMERA.device}


def test_the_cameras_level_is_the_release_in_its_zone() -> None:
    now = START
    sim = PlantSimulator(registry(), scenarios=ScenarioConfig(gas_release_first_s=20.0, gas_release_s=150.0))
    level = gas_level(sim, CAMERA, clock=lambda: now)
    sim.tick(START)
    assert level() == 0.0
    now = START + timedelta(seconds=25)
    assert level() == pytest.approx(alarm_scenarios.release_level(5.0, 150.0))
    now = START + timedelta(seconds=80)
    assert level() == 1.0
    elsewhere = DemoCamera(site=CAMERA.site, device="cam-tf-501", zone="tank-farm")
    assert gas_level(sim, elsewhere, clock=lambda: now)() == 0.0


def test_the_demo_adds_its_camera_unless_the_config_names_one_for_that_device() -> None:
    config = hub_config()
    found = demo_camera(config, registry())
    assert found == CAMERA
    added = with_demo_camera(config, found, "http://127.0.0.1:9/camera.mjpeg")
    (camera,) = VIDEO.section(added).cameras
    assert camera == camera_config(CAMERA, "http://127.0.0.1:9/camera.mjpeg")
    assert camera.is_stream and camera.detector.kind == "none" and camera.fire is not None
    assert {rule.rule for zone in camera.zones for rule in zone.rules} == {"fire", "smoke"}
    assert demo_camera(added, registry()) is None
    # A site file without the demo refinery's scripted devices gets no demo camera.
    empty = SiteRegistry([], [])
    assert demo_camera(config, empty) is None
    assert msgspec.to_builtins(camera)["analysis_fps"] == 2.0
