"""A camera's picture on its way to the city, in a running hub on a NATS server of its own (so
city credentials can be issued): the video service sees a figure enter a restricted zone in a
looping clip with a face in it; the detection raises an alarm, the alarm an intrusion incident;
under the site's `redacted` policy the FEED event names only the blurred copy, and the city,
with its own NATS credentials, gets that JPEG (no face found in it, the same bytes the tenant
reads at /v1/snapshots/{ref}/blurred) and cannot get the original, nor anything of the hub's
SNAPSHOTS stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import msgspec
import nats
import nats.errors
import numpy as np
import pytest
from nats.aio.client import Client as NATS

from services.common.auth.keys import create_key
from services.common.embedded import EmbeddedNats
from services.feed import credentials
from services.feed.config import FeedConfig, SitePolicy
from services.feed.domain.policy import Level
from services.hub.bootstrap import Endpoints, Hub
from services.video.config import VideoConfig
from tests.conftest import REPO, eventually, hub_config, reachable_temp_dir
from tests.integration.test_video_service import camera, faces
from tests.video_models import green_box_model, intrusion_clip

pytestmark = pytest.mark.integration

TENANT, SITE = "ulsan-refining", "ulsan-refinery"
CONSUMER = [sys.executable, str(REPO / "scripts" / "city_consumer.py")]


@dataclass
class CityHub:
    hub: Hub
    server: EmbeddedNats
    data_dir: Path
    session: aiohttp.ClientSession
    viewer: str

    async def get(self, path: str) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {self.viewer}"}
        async with self.session.get(self.hub.http_url + path, headers=headers) as resp:
            return resp.status, await resp.read()

    @property
    def store(self) -> Path:
        return self.data_dir.resolve() / "nats"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = reachable_temp_dir("safetyhub-feedsnap-")
    yield path / "data"
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def city_hub(database_url: str, data_dir: Path, tmp_path: Path) -> AsyncIterator[CityHub]:
    server = EmbeddedNats(data_dir)
    url = await server.start()
    clip = intrusion_clip(tmp_path / "intrusion.avi")
    model = green_box_model(tmp_path / "green.onnx")
    config = hub_config(
        video=VideoConfig(retry_max_s=1.0, cameras=[camera(clip, model)]),
        feed=FeedConfig(policies=[SitePolicy(tenant=TENANT, site=SITE, level=Level.REDACTED)]),
    )
    hub = Hub(config, REPO, Endpoints(url, database_url))
    await hub.start()
    viewer = await create_key(hub.pool, tenant=TENANT, role="viewer")
    session = aiohttp.ClientSession()
    try:
        yield CityHub(hub, server, data_dir, session, viewer)
    finally:
        await session.close()
        await hub.stop()
        await server.stop()


async def feed_events(nc: NATS) -> list[dict[str, Any]]:
    """Every FEED event so far, in order (read by sequence, as the city's replay does)."""
    js = nc.jetstream()
    info = await js.stream_info("FEED")
    events: list[dict[str, Any]] = []
    if not info.state.last_seq:
        return events
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            events.append(msgspec.json.decode((await js.get_msg("FEED", seq)).data or b"{}"))
    return events


async def only_named_pictures_copied(hub_nc: NATS) -> None:
    """FEED_SNAPSHOTS holds the pictures FEED events named, not every blurred copy: the line
    crossings of the same clip raise no alarm here, so theirs stay on SNAPSHOTS."""
    js = hub_nc.jetstream()
    named = {
        ref
        for event in await feed_events(hub_nc)
        for ref in [event["data"].get("snapshot"), *(event["data"].get("snapshots") or ())]
        if ref
    }
    copied = (await js.stream_info("FEED_SNAPSHOTS", subjects_filter=">")).state.subjects or {}
    assert copied and set(copied) <= named

    async def more_on_snapshots() -> int | None:
        info = await js.stream_info("SNAPSHOTS")
        return info.state.messages if info.state.messages > len(copied) else None

    await eventually(more_on_snapshots, what="blurred copies on SNAPSHOTS that were not shared")


async def responders_see_the_picture(city_hub: CityHub, incident_id: str, ref: str) -> None:
    """Within the tenant the alarm and the incident's member show the picture as its reference."""
    status, body = await city_hub.get(f"/v1/incidents/{incident_id}")
    assert status == 200, body
    assert f"/v1/snapshots/{ref}" in [m["snapshot"] for m in json.loads(body)["members"]]
    status, body = await city_hub.get(f"/v1/alarms/cam-tf-501--camera-intrusion?site={SITE}")
    assert status == 200, body
    shown = json.loads(body)["alarm"]["snapshot"]
    assert shown.startswith("/v1/snapshots/")
    assert (await city_hub.get(shown))[0] == 200


@dataclass
class City:
    """A city system's connection, its URL, and what the server refused it."""

    nc: NATS
    url: str
    errors: list[str]


async def connect_city(city_hub: CityHub) -> City:
    """Credentials issued now (with their durable on FEED, as the hub makes it) and a connection."""
    credential = await asyncio.to_thread(
        credentials.new_credential, "city-ulsan", now=datetime.now(UTC), by="test"
    )
    await asyncio.to_thread(credentials.add, city_hub.store, credential)
    hub_nc = await nats.connect(city_hub.server.url)
    try:
        await credentials.ensure_durable(hub_nc.jetstream(), credential.name)
    finally:
        await hub_nc.close()
    errors: list[str] = []

    async def on_error(err: Exception) -> None:
        errors.append(str(err).lower())

    url = f"nats://{credential.name}:{credential.secret}@{city_hub.server.url.rsplit('@', 1)[1]}"
    nc = await nats.connect(
        url, inbox_prefix=credentials.inbox_prefix(credential.name), error_cb=on_error, allow_reconnect=False
    )
    return City(nc, url, errors)


def follow_with_pictures(url: str, pictures: Path) -> list[dict[str, Any]]:
    """scripts/city_consumer.py as a city system runs it, saving the pictures events name."""
    result = subprocess.run(
        [*CONSUMER, "--url", url, "--idle-exit", "1", "--pictures", str(pictures)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


async def test_the_city_gets_the_blurred_picture_of_a_shared_detection_and_never_the_original(
    city_hub: CityHub, tmp_path: Path
) -> None:
    hub_nc = await nats.connect(city_hub.server.url)
    try:

        async def pictured() -> tuple[dict[str, Any], dict[str, Any]] | None:
            events = await feed_events(hub_nc)
            incident = next(
                (e for e in events if e["data"].get("type") == "intrusion" and e["data"].get("snapshots")),
                None,
            )
            alarm = next(
                (e for e in events if e["type"].endswith(".alarm.v1") and e["data"].get("snapshot")), None
            )
            return (incident, alarm) if incident is not None and alarm is not None else None

        incident, alarm = await eventually(
            pictured, timeout=60.0, what="a FEED intrusion incident and alarm naming a picture"
        )
        await only_named_pictures_copied(hub_nc)
    finally:
        await hub_nc.close()

    data = incident["data"]
    assert data["type"] == "intrusion"
    [subject] = data["snapshots"][:1]
    prefix = f"feedsnap.{TENANT}.{SITE}."
    assert subject.startswith(prefix)
    assert alarm["data"]["snapshot"].startswith(prefix)
    ref = subject.removeprefix(prefix)
    # Nothing of the tenant's own reference, nor the camera's name, leaves.
    text = json.dumps(incident) + json.dumps(alarm)
    assert "/v1/snapshots" not in text and "cam-tf-501" not in text

    await responders_see_the_picture(city_hub, data["id"], ref)
    status, original = await city_hub.get(f"/v1/snapshots/{ref}")
    assert status == 200 and faces(original) >= 1
    status, blurred = await city_hub.get(f"/v1/snapshots/{ref}/blurred")
    assert status == 200 and faces(blurred) == 0

    city = await connect_city(city_hub)
    try:
        js = city.nc.jetstream(prefix=credentials.API_PREFIX, timeout=2.0)
        got = await js.get_last_msg("FEED_SNAPSHOTS", subject)
        assert got.data == blurred, "the city's copy is the tenant's blurred copy"
        image = cv2.imdecode(np.frombuffer(got.data, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[:2] == (240, 320)
        assert faces(got.data) == 0
        assert got.data != original

        # The hub's SNAPSHOTS stream (every blurred copy, shared or not) is out of reach, and the
        # original never travels on the bus at all: the server refuses the request itself.
        with pytest.raises(nats.errors.TimeoutError):
            await js.get_last_msg("SNAPSHOTS", f"snapshot.{TENANT}.{SITE}.{ref}")
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await city.nc.request(
                "$JS.API.STREAM.MSG.GET.SNAPSHOTS",
                json.dumps({"last_by_subj": "snapshot.>"}).encode(),
                timeout=1,
            )
    finally:
        await city.nc.close()
    assert any("permissions violation" in err and "snapshots" in err for err in city.errors), city.errors

    # The consumer script saves each picture an event names, as the city's system would.
    lines = await asyncio.to_thread(follow_with_pictures, city.url, tmp_path / "pictures")
    saved = {path for line in lines for path in line.get("pictures", [])}
    assert str(tmp_path / "pictures" / f"{subject}.jpg") in saved
    assert (tmp_path / "pictures" / f"{subject}.jpg").read_bytes() == blurred
