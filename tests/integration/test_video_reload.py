"""The `video:` section reloaded from the hub's config file while the hub runs (real NATS and
PostgreSQL): a camera added is started and one removed stopped while the others run on
untouched, and an invalid edit is refused with file, line and key, keeping the cameras as they
were."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from services.hub.bootstrap import Endpoints, Hub
from services.hub.registry import REGISTRY
from tests.conftest import DEMO_SITES, EXTRA_SITE, eventually
from tests.video_models import green_box_model, intrusion_clip

pytestmark = pytest.mark.integration


def watched(clip: Path, model: Path) -> dict[str, Any]:
    return {
        "site": "ulsan-refinery",
        "device": "cam-tf-501",
        "source": str(clip),
        "analysis_fps": 10.0,
        "detector": {"kind": "onnx", "model": str(model), "input_size": 64},
        "tracker": {"min_hits": 2},
        "zones": [
            {
                "id": "tank-bund",
                "polygon": [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]],
                "rules": [{"rule": "intrusion"}],
            }
        ],
    }


def write(path: Path, cameras: list[dict[str, Any]]) -> None:
    # JSON written over many lines is YAML whose lines a refusal can name.
    config = {
        "http": {"port": 0},
        "sites": [str(DEMO_SITES), str(EXTRA_SITE)],
        "video": {"reload_s": 0.3, "retry_max_s": 1.0, "cameras": cameras},
    }
    path.write_text(json.dumps(config, indent=2) + "\n")


class Running:
    def __init__(self, hub: Hub, session: aiohttp.ClientSession) -> None:
        self.hub = hub
        self.session = session

    async def cameras(self) -> str:
        async with self.session.get(self.hub.http_url + "/readyz") as resp:
            body = await resp.json()
            return str(body.get("peers", {}).get("video.cameras"))


@pytest.fixture
async def running(
    nats_url: str, database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Running, Path, Any, list[Any]]]:
    first = watched(intrusion_clip(tmp_path / "intrusion.avi"), green_box_model(tmp_path / "green.onnx"))
    path = tmp_path / "hub.yaml"
    write(path, [first])
    config, base = REGISTRY.load_config(path, env={})
    # Logs from before the start: the first camera opens once, whatever the edits after.
    with capture_logs() as logs:
        hub = Hub(config, base, Endpoints(nats_url, database_url), config_file=path)
        await hub.start()
        async with aiohttp.ClientSession() as session:
            yield Running(hub, session), path, first, logs
        await hub.stop()


async def test_cameras_are_added_and_removed_by_editing_the_config_and_a_bad_edit_is_refused(
    running: tuple[Running, Path, Any, list[Any]], tmp_path: Path
) -> None:
    hub, path, first, logs = running
    broken = {"site": "mipo-aromatics", "device": "cam-tf-301", "source": str(tmp_path / "missing.avi")}

    async def state(want: str) -> str | None:
        cameras = await hub.cameras()
        return cameras if want in cameras else None

    await eventually(lambda: state("ok"), timeout=20.0, what="the first camera running")

    async def intrusions() -> int | None:
        count = await hub.hub.pool.fetchval(
            "SELECT count(*) FROM observations WHERE kind = 'video.intrusion'"
        )
        return int(count) or None

    await eventually(intrusions, timeout=45.0, what="an intrusion from the first camera")

    # Added: the hub starts it (and reports that its source does not open) without a restart.
    write(path, [first, broken])
    cameras = await eventually(lambda: state("missing.avi"), timeout=20.0, what="the added camera reported")
    assert "ulsan-refinery/cam-tf-501" not in cameras, "the first camera was disturbed"

    # A typo: refused with file, line and key; the cameras stay as they were.
    write(path, [first, {**broken, "analysis_fsp": 2}])

    def refused() -> list[dict[str, Any]]:
        return [e for e in logs if e.get("event") == "video_config_reload_failed"]

    async def reported() -> list[dict[str, Any]] | None:
        return refused() or None

    (refusal,) = await eventually(reported, timeout=10.0, what="the bad edit refused")
    assert refusal["file"] == str(path) and isinstance(refusal["line"], int) and refusal["line"] > 1
    assert "analysis_fsp" in refusal["key"]
    lines = path.read_text().splitlines()
    assert "analysis_fsp" in lines[refusal["line"] - 1]
    assert "missing.avi" in await hub.cameras()

    # Removed: stopped, and no longer reported; the first camera ran throughout, opened once.
    write(path, [first])
    await eventually(lambda: state("ok"), timeout=20.0, what="the removed camera gone from /readyz")
    opened = [e for e in logs if e.get("event") == "camera_open" and e.get("device") == "cam-tf-501"]
    assert len(opened) == 1, opened
    reloaded = [e for e in logs if e.get("event") == "video_config_reloaded"]
    assert [(e["added"], e["removed"], e["changed"]) for e in reloaded] == [
        (["mipo-aromatics/cam-tf-301"], [], []),
        ([], ["mipo-aromatics/cam-tf-301"], []),
    ]


async def test_a_hub_started_without_cameras_starts_the_first_one_an_edit_adds(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "hub.yaml"
    write(path, [])
    config, base = REGISTRY.load_config(path, env={})
    hub = Hub(config, base, Endpoints(nats_url, database_url), config_file=path)
    await hub.start()
    try:
        async with aiohttp.ClientSession() as session:
            running = Running(hub, session)
            assert await running.cameras() == "ok"
            write(
                path,
                [{"site": "mipo-aromatics", "device": "cam-tf-301", "source": str(tmp_path / "none.avi")}],
            )

            async def reported() -> str | None:
                cameras = await running.cameras()
                return cameras if "none.avi" in cameras else None

            await eventually(reported, timeout=20.0, what="the first camera started and reported")
    finally:
        await hub.stop()
