"""The live view's cameras: state and achieved rate from the process's metrics, the newest
detection and its blurred snapshot from the API's answer, one row per camera."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY as METRICS
from rich.console import Console

from services.hub.camera_view import (
    CameraLatest,
    Detection,
    camera_metrics,
    camera_statuses,
    camera_table,
    latest_of,
)
from services.hub.dashboard import FlowRates, FlowSnapshot, render
from services.video import metrics

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
BASE = "http://127.0.0.1:8080"


def text(renderable: object) -> str:
    console = Console(width=200, record=True)
    console.print(renderable)
    return console.export_text()


def test_state_and_rate_come_from_the_cameras_metrics() -> None:
    metrics.CAMERA_UP.labels("view-site/cam-up").set(1)
    metrics.ANALYSIS_FPS.labels("view-site/cam-up").set(1.9)
    metrics.CAMERA_UP.labels("view-site/cam-down").set(0)
    running = camera_metrics(METRICS.collect())
    assert running["view-site/cam-up"] == (True, 1.9)
    assert running["view-site/cam-down"] == (False, None)


def test_the_newest_detection_and_the_condition_are_read_from_the_latest_answer() -> None:
    items = [
        {
            "kind": "video.fire",
            "time": "2026-11-22T08:50:00+00:00",
            "confidence": 0.7,
            "snapshot": "/v1/snapshots/A",
        },
        {
            "kind": "video.smoke",
            "time": "2026-11-22T08:59:30+00:00",
            "confidence": 0.84,
            "snapshot": "/v1/snapshots/B",
        },
        {
            "kind": "video.camera_health",
            "time": "2026-11-22T08:40:00+00:00",
            "value": 0.0,
            "attributes": {"condition": "ok"},
        },
    ]
    latest = latest_of(items, BASE + "/")
    assert latest.condition == "ok"
    assert latest.detection == Detection(
        kind="video.smoke",
        time=NOW - timedelta(seconds=30),
        confidence=0.84,
        snapshot=f"{BASE}/v1/snapshots/B/blurred",
    )
    assert latest_of([], BASE) == CameraLatest()


def test_each_camera_shows_its_state_rate_last_detection_and_snapshot_link() -> None:
    seen = Detection(
        kind="video.smoke",
        time=NOW - timedelta(seconds=12),
        confidence=0.84,
        snapshot=f"{BASE}/v1/snapshots/B/blurred",
    )
    statuses = camera_statuses(
        ["ulsan-refinery/cam-fcc2-201", "ulsan-refinery/cam-tf-501", "ulsan-refinery/cam-lr-401"],
        {"ulsan-refinery/cam-fcc2-201": (True, 2.0), "ulsan-refinery/cam-tf-501": (False, 0.0)},
        {
            "ulsan-refinery/cam-fcc2-201": CameraLatest(detection=seen, condition="ok"),
            "ulsan-refinery/cam-tf-501": CameraLatest(condition="offline"),
        },
    )
    assert [s.state for s in statuses] == ["streaming", "offline", "standby"]
    shown = text(camera_table(statuses, NOW))
    rows = {line.split()[0]: line for line in shown.splitlines() if line.strip().startswith("ulsan")}
    assert "streaming" in rows["ulsan-refinery/cam-fcc2-201"]
    assert "2.0" in rows["ulsan-refinery/cam-fcc2-201"]
    assert "video.smoke 0.84, 12s ago" in rows["ulsan-refinery/cam-fcc2-201"]
    assert f"{BASE}/v1/snapshots/B/blurred" in rows["ulsan-refinery/cam-fcc2-201"]
    assert "offline" in rows["ulsan-refinery/cam-tf-501"] and "none yet" in rows["ulsan-refinery/cam-tf-501"]
    # A picture that went bad says how, beside streaming.
    covered = camera_statuses(["s/c"], {"s/c": (True, 2.0)}, {"s/c": CameraLatest(condition="covered")})
    assert covered[0].state == "streaming, covered"


def test_the_whole_view_has_the_cameras_below_the_incidents() -> None:
    statuses = camera_statuses(
        ["ulsan-refinery/cam-fcc2-201"], {"ulsan-refinery/cam-fcc2-201": (True, 2.0)}, {}
    )
    shown = text(render({}, FlowSnapshot(), FlowRates(), incidents=([], NOW), cameras=statuses))
    assert shown.index("Open incidents") < shown.index("Cameras") < shown.index("Ctrl-C")
    assert "ulsan-refinery/cam-fcc2-201" in shown
    assert "Cameras" not in text(render({}, FlowSnapshot(), FlowRates()))
