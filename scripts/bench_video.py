#!/usr/bin/env python3
"""Video benchmark: what one camera's analysis costs on one core, with and without motion gating.

Makes a 720p clip of a mostly static scene (a yard with sensor noise; a figure walks through it
for a fifth of the time), 25 frames/s, MJPEG, in a temporary directory. Then, on one thread (OpenCV
and ONNX Runtime limited to one thread each, so the figures are per core):

- decode: the time to read and decode each frame of the clip, as a camera's worker must;
- per detector (OpenCV's HOG people detector, the classical fire and smoke detector alone, and a
  YOLOv8-format ONNX model when one is given,
  e.g. the fall model `safetyhub models install fall` puts in the data dir): the service's own
  per-frame analysis (scale to 640 wide, motion gate, detect, track, zone rules) on the frames a
  2 frames/s camera analyses, with gating off and on: analysed frames/s per core;
- for the ONNX model: ms per inference through the pipeline (gating off) and the raw
  `session.run` time on the same input in the same run, and their ratio;
- how many such cameras (decoding 25 frames/s, analysing 2) one core sustains, gated.

Prints a table and, as its last line, one JSON object. Not a test: CI does not run it.
Usage: scripts/bench_video.py [--video-seconds 60] [--model PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2
import numpy as np
import onnxruntime as ort

from services.video.adapters.detectors import Detector, HogDetector, OnnxDetector, build_detector
from services.video.adapters.source import Frame, FrameSource
from services.video.config import (
    CameraConfig,
    DetectorConfig,
    FireConfig,
    MotionConfig,
    RuleConfig,
    ZoneConfig,
)
from services.video.worker import FrameAnalysis

FPS = 25
ANALYSIS_FPS = 2
WIDTH, HEIGHT = 1280, 720
ZONE = ZoneConfig(
    id="yard",
    polygon=[(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)],
    rules=[RuleConfig(rule="intrusion")],
)


def make_clip(path: Path, seconds: int) -> Path:
    rng = np.random.default_rng(1)
    yard = cv2.GaussianBlur(rng.integers(30, 200, (HEIGHT, WIDTH, 3), dtype=np.uint8), (0, 0), 6)
    cv2.rectangle(yard, (100, 380), (500, 700), (90, 90, 90), -1)  # a shed
    cv2.line(yard, (0, 360), (WIDTH, 360), (160, 160, 160), 6)  # a fence
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    frames = seconds * FPS
    walk_from, walk_to = int(frames * 0.4), int(frames * 0.6)
    for i in range(frames):
        frame = yard.copy()
        if walk_from <= i < walk_to:
            x = 100 + (i - walk_from) * (WIDTH - 300) // (walk_to - walk_from)
            cv2.rectangle(frame, (x, 300), (x + 60, 480), (40, 50, 60), -1)
            cv2.circle(frame, (x + 30, 280), 22, (120, 140, 170), -1)
        noise = rng.normal(0, 2.0, frame.shape)
        writer.write(np.clip(frame + noise, 0, 255).astype(np.uint8))
    writer.release()
    return path


def decode_all(path: Path, frames: int) -> tuple[list[Frame], float]:
    source = FrameSource(str(path), is_stream=False, timeout_s=5.0)
    source.open()
    kept: list[Frame] = []
    started = time.perf_counter()
    for i in range(frames):
        frame = source.read()
        assert frame is not None
        if i % (FPS // ANALYSIS_FPS) == 0:
            kept.append(frame)
    elapsed = time.perf_counter() - started
    source.close()
    return kept, elapsed / frames


def analyse(
    detector: Detector, frames: list[Frame], *, gated: bool, raw: ort.InferenceSession | None = None
) -> tuple[float, int, float]:
    """Seconds per analysed frame, how many frames ran the detector, and (with `raw`) the seconds
    per bare `session.run` on the same input, timed right after each frame so load drifts alike."""
    camera = CameraConfig(
        site="bench",
        device=f"cam-{'gated' if gated else 'ungated'}-{detector.name}",
        source="bench.avi",
        analysis_fps=ANALYSIS_FPS,
        motion=MotionConfig(enabled=gated),
        zones=[ZONE],
    )
    analysis = FrameAnalysis(camera, detector)
    before = _count(analysis)
    pipeline: list[float] = []
    bare: list[float] = []
    for i, frame in enumerate(frames):
        started = time.perf_counter()
        analysis.frame(frame, i / ANALYSIS_FPS)
        pipeline.append(time.perf_counter() - started)
        if raw is not None and isinstance(detector, OnnxDetector):
            tensor = detector.prepare(cv2.resize(frame, (640, 360), interpolation=cv2.INTER_AREA))[0]
            name = raw.get_inputs()[0].name
            started = time.perf_counter()
            raw.run(None, {name: tensor})
            bare.append(time.perf_counter() - started)
    return statistics.mean(pipeline), _count(analysis) - before, statistics.mean(bare) if bare else 0.0


def _count(analysis: FrameAnalysis) -> int:
    """Frames the detector ran on so far, read back from the service's own counter."""
    return int(
        sum(s.value for m in analysis.analysed.collect() for s in m.samples if s.name.endswith("_total"))
    )


def raw_session(model: Path) -> ort.InferenceSession:
    """A session of its own on the model, configured as the detector's (one thread)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video-seconds", type=int, default=60)
    parser.add_argument(
        "--model", type=Path, default=None, help="a YOLOv8-format .onnx (e.g. the fall model)"
    )
    args = parser.parse_args()
    cv2.setNumThreads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    result: dict[str, float | int | str | None] = {"video": f"{WIDTH}x{HEIGHT} {FPS} fps MJPEG"}
    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        clip = make_clip(Path(tmp) / "yard.avi", args.video_seconds)
        frames, decode_s = decode_all(clip, args.video_seconds * FPS)
    result["decode_ms_per_frame"] = round(decode_s * 1000, 2)
    print(
        f"decode: {decode_s * 1000:.2f} ms per 720p frame ({decode_s * FPS * 100:.1f} % of a core per camera)"
    )
    print(f"{len(frames)} frames analysed per run ({ANALYSIS_FPS} of every {FPS})")

    detectors: list[tuple[str, Detector]] = [
        ("hog", HogDetector(DetectorConfig())),
        # The classical fire and smoke detector alone (colour and flicker, no model).
        ("fire", build_detector(DetectorConfig(kind="none"), FireConfig())),
    ]
    onnx: OnnxDetector | None = None
    if args.model is not None:
        onnx = OnnxDetector(DetectorConfig(kind="onnx", model=str(args.model), threads=1))
        detectors.append(("onnx", onnx))
    gated_s: dict[str, float] = {}
    for name, detector in detectors:
        raw = raw_session(args.model) if name == "onnx" and args.model is not None else None
        if raw is not None:  # first runs allocate: not part of either figure
            analyse(detector, frames[:2], gated=False, raw=raw)
        ungated, runs_off, bare = analyse(detector, frames, gated=False, raw=raw)
        gated, runs_on, _ = analyse(detector, frames, gated=True)
        gated_s[name] = gated
        result[f"{name}_fps_per_core_ungated"] = round(1 / ungated, 2)
        result[f"{name}_fps_per_core_gated"] = round(1 / gated, 2)
        result[f"{name}_ms_per_frame_ungated"] = round(ungated * 1000, 2)
        result[f"{name}_ms_per_frame_gated"] = round(gated * 1000, 2)
        result[f"{name}_detector_runs_gated"] = runs_on
        per_frame = f"{ungated * 1000:.1f} ms, detector on {runs_off}"
        print(f"{name}: ungated {1 / ungated:.1f} frames/s per core ({per_frame})")
        print(
            f"{name}: gated {1 / gated:.1f} frames/s per core ({gated * 1000:.1f} ms, detector on {runs_on})"
        )
        if raw is not None:
            result["onnx_raw_ms"] = round(bare * 1000, 2)
            result["onnx_pipeline_ms"] = round(ungated * 1000, 2)
            result["onnx_pipeline_ratio_to_raw"] = round(ungated / bare, 3)
            print(f"onnx: raw session.run {bare * 1000:.1f} ms, pipeline {ungated * 1000:.1f} ms")
            print(f"onnx: pipeline / raw = {ungated / bare:.3f}")
    best = "onnx" if onnx is not None else "hog"
    per_camera = ANALYSIS_FPS * gated_s[best] + FPS * decode_s
    result["cameras_per_core_at_2fps_gated"] = round(1 / per_camera, 1)
    result["cameras_per_core_at_2fps_gated_detector"] = best
    result["cameras_per_core_at_2fps_gated_without_decode"] = round(1 / (ANALYSIS_FPS * gated_s[best]), 1)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(
        f"cameras per core at {ANALYSIS_FPS} fps, gated, {best}: {1 / per_camera:.1f} "
        f"(decoding every frame); {result['cameras_per_core_at_2fps_gated_without_decode']} without decoding"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
