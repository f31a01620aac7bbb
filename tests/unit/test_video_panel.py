"""The video service's rows of the live view."""

from __future__ import annotations

from prometheus_client import REGISTRY as METRICS

from services.hub.dashboard import panel_lines
from services.video import metrics
from services.video.app import VIDEO


def test_the_live_view_shows_each_cameras_analysis_rate() -> None:
    metrics.ANALYSIS_FPS.labels("ulsan-refinery/cam-fcc2-201").set(1.8)
    metrics.ANALYSIS_FPS.labels("ulsan-refinery/cam-tf-501").set(2.0)
    (rate,) = [line for line in panel_lines(METRICS.collect(), [VIDEO]) if line.label == "Analysed frames/s"]
    assert rate.breakdown["ulsan-refinery/cam-fcc2-201"] == 1.8
    assert rate.breakdown["ulsan-refinery/cam-tf-501"] == 2.0
