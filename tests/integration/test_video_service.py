"""The video service in a real hub (real NATS with JetStream, real PostgreSQL): a looping clip with
a figure walking into a restricted zone becomes `video.intrusion` observations in the store, with
snapshots served to the camera's tenant only, and a blurred copy in which no face is found.

The clip is made here (tests/video_models.py): a green figure, found by a tiny ONNX detector built
with the onnx helper, beside NASA's public-domain astronaut photograph (shipped in scikit-image)
for the face.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import msgspec
import numpy as np
import pytest

from services.common.auth.keys import create_key
from services.hub.bootstrap import Endpoints, Hub
from services.simulator.camera_scene import fire_and_smoke, write_clip
from services.video.adapters import snapshots
from services.video.config import (
    CameraConfig,
    DetectorConfig,
    FireConfig,
    LineConfig,
    RuleConfig,
    TrackerConfig,
    VideoConfig,
    ZoneConfig,
)
from tests.conftest import REPO, eventually, hub_config
from tests.video_models import green_box_model, intrusion_clip

pytestmark = pytest.mark.integration

LOWER_HALF = [(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)]
CASCADES = ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt.xml")


def camera(source: Path, model: Path, **changes: Any) -> CameraConfig:
    base = CameraConfig(
        site="ulsan-refinery",
        device="cam-tf-501",
        source=str(source),
        analysis_fps=10.0,
        detector=DetectorConfig(kind="onnx", model=str(model), input_size=64, confidence=0.5),
        tracker=TrackerConfig(min_hits=2),
        zones=[ZoneConfig(id="tank-bund", polygon=LOWER_HALF, rules=[RuleConfig(rule="intrusion")])],
        lines=[LineConfig(id="bund-wall", points=[(0.0, 0.5), (1.0, 0.5)], direction="left_to_right")],
    )
    return msgspec.structs.replace(base, **changes)


@dataclass
class VideoHub:
    hub: Hub
    session: aiohttp.ClientSession
    keys: dict[str, str]

    async def get(self, path: str, key: str) -> tuple[int, str, bytes]:
        headers = {"Authorization": f"Bearer {self.keys[key]}"}
        async with self.session.get(self.hub.http_url + path, headers=headers) as resp:
            return resp.status, resp.content_type, await resp.read()

    async def readyz(self) -> tuple[int, dict[str, str]]:
        async with self.session.get(self.hub.http_url + "/readyz") as resp:
            body = await resp.json()
            # Cameras are reported among the peers, beside the hub's own checks.
            return resp.status, {**body["checks"], **body.get("peers", {})}


async def start(
    nats_url: str, database_url: str, cameras: list[CameraConfig], video: VideoConfig | None = None
) -> VideoHub:
    settings = msgspec.structs.replace(video or VideoConfig(retry_max_s=1.0), cameras=cameras)
    hub = Hub(
        hub_config(video=settings),
        REPO,
        Endpoints(nats_url, database_url),
    )
    await hub.start()
    keys = {
        "viewer": await create_key(hub.pool, tenant="ulsan-refining", role="viewer"),
        "other_site_viewer": await create_key(
            hub.pool, tenant="ulsan-refining", role="viewer", sites=["ulsan-refinery-east"]
        ),
        "mipo_viewer": await create_key(hub.pool, tenant="mipo-petrochem", role="viewer"),
        "gateway": await create_key(hub.pool, tenant="ulsan-refining", role="gateway"),
    }
    return VideoHub(hub, aiohttp.ClientSession(), keys)


@pytest.fixture
async def clip_hub(nats_url: str, database_url: str, tmp_path: Path) -> AsyncIterator[VideoHub]:
    clip = intrusion_clip(tmp_path / "intrusion.avi")
    model = green_box_model(tmp_path / "green.onnx")
    running = await start(nats_url, database_url, [camera(clip, model)])
    yield running
    await running.session.close()
    await running.hub.stop()


def faces(jpeg: bytes) -> int:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    found = 0
    for name in CASCADES:
        cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)  # type: ignore[attr-defined]
        found += len(cascade.detectMultiScale(grey, scaleFactor=1.05, minNeighbors=3, minSize=(12, 12)))
    return found


async def test_an_intrusion_in_a_looping_clip_reaches_the_store_with_its_snapshots(
    clip_hub: VideoHub,
) -> None:
    async def stored() -> list[Any]:
        rows: list[Any] = await clip_hub.hub.pool.fetch(
            "SELECT id, tenant, site, device, kind, confidence, snapshot, detail FROM observations "
            "WHERE kind = 'video.intrusion'"
        )
        return rows

    rows = await eventually(stored, timeout=45.0, what="a video.intrusion observation in the store")
    row = rows[0]
    assert (row["tenant"], row["site"], row["device"]) == ("ulsan-refining", "ulsan-refinery", "cam-tf-501")
    assert row["confidence"] == pytest.approx(1.0)
    detail = json.loads(row["detail"])
    assert detail["attributes"]["zone"] == "tank-bund"
    assert detail["attributes"]["label"] == "person"
    assert int(detail["attributes"]["track_id"]) >= 1
    # The green figure is 20 x 40 pixels of a 320 x 240 frame, its feet already in the lower half.
    box = detail["box"]
    assert box["width"] == pytest.approx(20 / 320, abs=0.03)
    assert box["height"] == pytest.approx(40 / 240, abs=0.05)
    assert box["y"] + box["height"] >= 0.5
    path = row["snapshot"]
    assert path.startswith("/v1/snapshots/")

    status, content_type, raw = await clip_hub.get(path, "viewer")
    assert (status, content_type) == (200, "image/jpeg")
    assert faces(raw) >= 1, "the snapshot as taken shows the face in the corner"
    status, content_type, blurred = await clip_hub.get(path + "/blurred", "viewer")
    assert (status, content_type) == (200, "image/jpeg")
    assert faces(blurred) == 0, "a face is still found in the blurred copy"
    # The rest of the picture is untouched: the green figure is still there.
    image = cv2.imdecode(np.frombuffer(blurred, np.uint8), cv2.IMREAD_COLOR)
    assert ((image[:, :, 1] > 200) & (image[:, :, 2] < 60)).sum() > 300

    # Another tenant, or a key of the tenant's other site, learns nothing; a gateway may not read.
    for key in ("mipo_viewer", "other_site_viewer"):
        status, content_type, body = await clip_hub.get(path, key)
        assert (status, content_type) == (404, "application/problem+json")
        assert json.loads(body)["detail"].startswith("no snapshot")
    assert (await clip_hub.get(path, "gateway"))[0] == 403
    assert (await clip_hub.get("/v1/snapshots/01KB9ZQ4XJ3J5V4N2Y7W8X9Z0A/blurred", "viewer"))[0] == 404
    assert (await clip_hub.get("/v1/snapshots/not-a-ref", "viewer"))[0] == 404

    status, checks = await clip_hub.readyz()
    assert (status, checks["video.cameras"]) == (200, "ok")

    # The figure walks down over the wall drawn left to right: from its left side to its right.
    async def crossed() -> list[Any]:
        rows: list[Any] = await clip_hub.hub.pool.fetch(
            "SELECT detail FROM observations WHERE kind = 'video.line_crossing'"
        )
        return rows

    crossing = json.loads((await eventually(crossed, timeout=30.0, what="a line crossing"))[0]["detail"])
    assert crossing["attributes"]["line"] == "bund-wall"
    assert crossing["attributes"]["direction"] == "left_to_right"


async def test_a_camera_that_cannot_be_opened_is_reported_while_the_hub_runs(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    model = green_box_model(tmp_path / "green.onnx")
    cameras = [
        camera(tmp_path / "missing.avi", model),
        camera(tmp_path / "missing.avi", model, device="gd-cdu1-101"),  # a gas detector, not a camera
        camera(
            intrusion_clip(tmp_path / "clip.avi"),
            tmp_path / "no-model.onnx",
            site="mipo-aromatics",
            device="cam-tf-301",
        ),
    ]
    running = await start(nats_url, database_url, cameras)
    try:

        async def reported() -> dict[str, str] | None:
            status, checks = await running.readyz()
            video = checks["video.cameras"]
            # Named, but not counted toward ready: the hub stays in service (200).
            ok = status == 200 and "missing.avi" in video and "not a camera" in video and "no-model" in video
            return checks if ok else None

        checks = await eventually(reported, timeout=20.0, what="/readyz naming the broken cameras")
        assert checks["nats"] == "ok" and checks["postgres"] == "ok", checks
        async with running.session.get(running.hub.http_url + "/metrics") as resp:
            text = await resp.text()
        assert 'safetyhub_video_camera_up{camera="ulsan-refinery/cam-tf-501"} 0.0' in text
        assert (
            'safetyhub_video_camera_failures_total{camera="ulsan-refinery/cam-tf-501",reason="SourceError"}'
            in text
        )
        # The rest of the hub runs: a reading is accepted and stored.
        gateway = {"Authorization": f"Bearer {running.keys['gateway']}"}
        reading = {"site": "ulsan-refinery", "device": "gd-cdu1-101", "kind": "gas.h2s", "value": 1.0}
        async with running.session.post(
            running.hub.http_url + "/v1/observations", json=reading, headers=gateway
        ) as resp:
            assert resp.status == 202
    finally:
        await running.session.close()
        await running.hub.stop()


async def test_snapshots_older_than_the_retention_are_purged(migrated_pool: Any) -> None:
    now = datetime.now(UTC)
    for ref, age in (("01KB9ZQ4XJ3J5V4N2Y7W8X9Z0A", 31), ("01KB9ZQ4XJ3J5V4N2Y7W8X9Z0B", 29)):
        snapshot = snapshots.Snapshot(
            ref,
            "ulsan-refining",
            "ulsan-refinery",
            "cam-tf-501",
            now - timedelta(days=age),
            b"raw",
            b"soft",
            0,
        )
        async with migrated_pool.acquire() as conn:
            await snapshots.insert(conn, snapshot)
    async with migrated_pool.acquire() as conn:
        assert await snapshots.purge(conn, 30) == 1
    assert await snapshots.fetch(migrated_pool, "01KB9ZQ4XJ3J5V4N2Y7W8X9Z0A", blurred=False) is None
    kept = await snapshots.fetch(migrated_pool, "01KB9ZQ4XJ3J5V4N2Y7W8X9Z0B", blurred=True)
    assert kept is not None and kept.image == b"soft"


async def test_a_covered_lens_is_reported_as_camera_health(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    clip = tmp_path / "covered.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (320, 240))
    rng = np.random.default_rng(5)
    for _ in range(20):  # a bag over the lens: dark and flat, with a little sensor noise
        writer.write(np.clip(rng.normal(8, 1.5, (240, 320, 3)), 0, 255).astype(np.uint8))
    writer.release()
    settings = VideoConfig(health_hold_s=0.5, retry_max_s=1.0)
    running = await start(
        nats_url, database_url, [camera(clip, green_box_model(tmp_path / "g.onnx"))], settings
    )
    try:

        async def reported() -> list[Any]:
            rows: list[Any] = await running.hub.pool.fetch(
                "SELECT value, detail FROM observations WHERE kind = 'video.camera_health'"
            )
            return rows

        (row,) = await eventually(reported, timeout=30.0, what="a camera_health observation")
        assert row["value"] == 1.0
        assert json.loads(row["detail"])["attributes"] == {"camera": "cam-tf-501", "condition": "covered"}
    finally:
        await running.session.close()
        await running.hub.stop()


async def test_fire_and_smoke_in_a_looping_clip_reach_the_store_as_their_own_observations(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    # The simulated camera's yard: a flame burning on the right, smoke rising on the left.
    clip = write_clip(tmp_path / "yard.avi", fire_and_smoke(48), fps=10.0)
    whole = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
    watched = camera(
        clip,
        tmp_path / "unused.onnx",
        detector=DetectorConfig(kind="none"),
        fire=FireConfig(window=6),
        zones=[
            ZoneConfig(
                id="tank-farm",
                polygon=whole,
                rules=[RuleConfig(rule="fire", seconds=1.0), RuleConfig(rule="smoke", seconds=1.0)],
            )
        ],
        lines=[],
    )
    running = await start(nats_url, database_url, [watched])
    try:

        async def stored() -> dict[str, Any] | None:
            rows = await running.hub.pool.fetch(
                "SELECT kind, confidence, snapshot, detail FROM observations "
                "WHERE kind IN ('video.fire', 'video.smoke')"
            )
            found = {row["kind"]: row for row in rows}
            return found if len(found) == 2 else None

        found = await eventually(stored, timeout=45.0, what="video.fire and video.smoke in the store")
        fire, smoke = (json.loads(found[k]["detail"]) for k in ("video.fire", "video.smoke"))
        assert fire["attributes"]["zone"] == smoke["attributes"]["zone"] == "tank-farm"
        assert (fire["attributes"]["label"], smoke["attributes"]["label"]) == ("fire", "smoke")
        # Each where it is in the picture: the flame at x 250 of 320, the smoke at x 80.
        for detail, centre in ((fire, 250 / 320), (smoke, 80 / 320)):
            box = detail["box"]
            assert box["x"] < centre < box["x"] + box["width"], detail
        assert float(fire["attributes"]["dwell_s"]) >= 1.0
        for kind in ("video.fire", "video.smoke"):
            assert 0.5 <= found[kind]["confidence"] <= 1.0
            status, content_type, _ = await running.get(found[kind]["snapshot"], "viewer")
            assert (status, content_type) == (200, "image/jpeg")
        # A fire that burns on is reported once per track, not once per frame.
        assert await running.hub.pool.fetchval(
            "SELECT count(*) FROM observations WHERE kind = 'video.fire'"
        ) <= 2
    finally:
        await running.session.close()
        await running.hub.stop()
