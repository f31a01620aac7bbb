"""Prometheus metrics of the video service, labelled by camera (`site/device`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

FRAMES = Counter(
    "safetyhub_video_frames",
    "Frames read from cameras, by outcome: analysed, still (no motion: detection skipped), "
    "skipped (over the analysis rate: an MJPEG frame is then not even decoded), corrupt (a frame to be "
    "analysed that could not be decoded)",
    ["camera", "outcome"],
)
DECODED = Counter(
    "safetyhub_video_decoded_frames",
    "Frames decoded into pictures: those analysed of an MJPEG camera, every frame of an H.264 one",
    ["camera"],
)
ANALYSIS_FPS = Gauge(
    "safetyhub_video_analysis_fps",
    "Frames analysed per second over the last 10 s (below the configured rate: the worker is overloaded)",
    ["camera"],
    multiprocess_mode="max",
)
CAMERA_UP = Gauge(
    "safetyhub_video_camera_up",
    "1 while the camera delivers frames to this process, else 0",
    ["camera"],
    multiprocess_mode="max",
)
CAMERA_FAILURES = Counter(
    "safetyhub_video_camera_failures",
    "Cameras that could not be opened or dropped out (each is retried with back-off), by reason",
    ["camera", "reason"],
)
DETECTIONS = Counter("safetyhub_video_detections", "Rule firings stored and queued for the bus", ["rule"])
INFERENCE_SECONDS = Histogram(
    "safetyhub_video_inference_seconds",
    "Time a detector took on one frame",
    ["detector"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2),
)
PUBLISH_FAILURES = Counter(
    "safetyhub_video_publish_failures",
    "Attempts to store a firing and its snapshot that failed (retried while PostgreSQL is away)",
    ["reason"],
)
