"""The live view's cameras: for each camera the hub analyses, whether it streams, the analysis rate
it achieves, its condition, and its newest detection with a link to the blurred snapshot.

The state and the rate come from the process's own metrics (`safetyhub_video_camera_up`,
`safetyhub_video_analysis_fps`), as a scrape shows them; the condition and the newest detection
are read as any client reads them, from `GET /v1/devices/{device}/latest` with the demo's viewer
key. Pure parts (`camera_metrics`, `latest_of`, `camera_statuses`, `camera_table`, time as a
parameter) apart from the fetch (`CameraFeed`), so the rendering is tested without a hub.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from rich import box
from rich.table import Table
from rich.text import Text

from services.common.logging import get_logger
from services.hub.incident_view import age
from services.video import metrics

log = get_logger(__name__)
HEALTH_KIND = "video.camera_health"


def _exposed(metric: MetricWrapperBase) -> str:
    (family,) = metric.describe()
    return family.name


# From the metrics themselves, so a renamed metric cannot leave the view reading nothing.
_UP = _exposed(metrics.CAMERA_UP)
_FPS = _exposed(metrics.ANALYSIS_FPS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Detection:
    kind: str
    time: datetime
    confidence: float | None
    snapshot: str | None  # the blurred snapshot's URL


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraLatest:
    """What the API says of a camera: its newest detection and its last reported condition."""

    detection: Detection | None = None
    condition: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraStatus:
    camera: str  # site/device
    up: bool | None  # None: no worker in this process (another process leads, or not started)
    fps: float | None
    latest: CameraLatest = CameraLatest()

    @property
    def state(self) -> str:
        if self.up is None:
            return "standby"
        if not self.up:
            return "offline"
        condition = self.latest.condition
        # The picture's own condition, when it has one to report (frozen, covered, blinded).
        return "streaming" if condition in (None, "ok", "offline") else f"streaming, {condition}"


def camera_metrics(families: Iterable[Metric]) -> dict[str, tuple[bool | None, float | None]]:
    """Each camera's (up, achieved analysis frames/s) from metric families; None where unknown."""
    up: dict[str, bool] = {}
    fps: dict[str, float] = {}
    for metric in families:
        for sample in metric.samples:
            camera = sample.labels.get("camera")
            if camera is None:
                continue
            if sample.name == _UP:
                up[camera] = up.get(camera, False) or sample.value >= 1.0
            elif sample.name == _FPS:
                fps[camera] = max(fps.get(camera, 0.0), sample.value)
    return {camera: (up.get(camera), fps.get(camera)) for camera in sorted({*up, *fps})}


def latest_of(items: Iterable[Mapping[str, Any]], base_url: str) -> CameraLatest:
    """The newest detection and the condition among a device's newest observation per kind."""
    detection: Detection | None = None
    condition: str | None = None
    for item in items:
        kind = str(item.get("kind", ""))
        if kind == HEALTH_KIND:
            condition = (item.get("attributes") or {}).get("condition")
            continue
        if not kind.startswith("video.") or item.get("confidence") is None:
            continue  # a detection carries a confidence; anything else is not one
        at = datetime.fromisoformat(str(item["time"]))
        if detection is not None and detection.time >= at:
            continue
        snapshot = item.get("snapshot")
        link = f"{base_url.rstrip('/')}{snapshot}/blurred" if isinstance(snapshot, str) and snapshot else None
        detection = Detection(kind=kind, time=at, confidence=item.get("confidence"), snapshot=link)
    return CameraLatest(detection=detection, condition=condition)


def camera_statuses(
    configured: Sequence[str],
    running: Mapping[str, tuple[bool | None, float | None]],
    latest: Mapping[str, CameraLatest],
) -> list[CameraStatus]:
    """One row per camera, configured or running, in the order configured."""
    names = list(dict.fromkeys([*configured, *running]))
    return [
        CameraStatus(
            camera=name,
            up=running.get(name, (None, None))[0],
            fps=running.get(name, (None, None))[1],
            latest=latest.get(name, CameraLatest()),
        )
        for name in names
    ]


_STATE_STYLE = {"streaming": "green", "offline": "bold red", "standby": "dim"}


def camera_table(cameras: Sequence[CameraStatus], now: datetime) -> Table:
    """The cameras, one row each: state, analysis rate, newest detection and its snapshot."""
    table = Table(title="Cameras", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("camera", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("analysed/s", justify="right", no_wrap=True)
    table.add_column("last detection", no_wrap=True)
    table.add_column("snapshot (blurred)", overflow="fold")
    for camera in cameras:
        found = camera.latest.detection
        if found is None:
            last = Text("none yet", style="dim")
        else:
            confidence = "" if found.confidence is None else f" {found.confidence:.2f}"
            last = Text(f"{found.kind}{confidence}, {age((now - found.time).total_seconds())} ago")
        snapshot = Text("")
        if found is not None and found.snapshot is not None:
            snapshot = Text(found.snapshot, style=f"link {found.snapshot}")
        state = camera.state
        table.add_row(
            camera.camera,
            Text(state, style=_STATE_STYLE.get(state, "yellow")),
            "-" if camera.fps is None else f"{camera.fps:.1f}",
            last,
            snapshot,
        )
    return table


class CameraFeed:
    """Reads each camera device's newest observations from the API with a key that may read them."""

    def __init__(self, base_url: str, key: str, cameras: Sequence[str], *, timeout_s: float = 2.0) -> None:
        self._base = base_url.rstrip("/")
        self._cameras = list(cameras)
        self._headers = {"Authorization": f"Bearer {key}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._last: dict[str, CameraLatest] = {}

    @property
    def cameras(self) -> list[str]:
        return list(self._cameras)

    async def fetch(self) -> dict[str, CameraLatest]:
        """Each camera's newest detection and condition; what was read before where a read fails."""
        async with aiohttp.ClientSession(timeout=self._timeout, headers=self._headers) as session:
            for camera in self._cameras:
                site, _, device = camera.partition("/")
                url = f"{self._base}/v1/devices/{quote(device, safe='')}/latest?site={quote(site, safe='')}"
                try:
                    async with session.get(url) as resp:
                        if resp.status != 200:
                            log.warning("camera_view_unreadable", camera=camera, status=resp.status)
                            continue
                        body = await resp.json()
                except (aiohttp.ClientError, TimeoutError) as err:
                    log.warning("camera_view_unreadable", camera=camera, error=str(err))
                    continue
                self._last[camera] = latest_of(body.get("items", []), self._base)
        return dict(self._last)
