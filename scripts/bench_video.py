#!/usr/bin/env python3
"""Video benchmark: what one camera costs on one core, reading and decoding included, before and after.

Makes a 720p clip of a mostly static scene (a yard with sensor noise; a figure walks through it
for a fifth of the time), 25 frames/s, MJPEG, in a temporary directory. Then, on one thread (OpenCV
and ONNX Runtime limited to one thread each), timed in CPU seconds of this process, all its threads
(getrusage: FFmpeg's decoder may use threads of its own; the machine may be shared, and wall time
counts the others' work), so figures are per core; wall time beside them for comparison:

- reading: per frame, a full decode (the way before: every frame decoded), a grab of the JPEG
  packet alone, and the decode of an analysed frame at the scale the analysis needs (1/2 for 640
  wide); the same clip's JPEGs read from an HTTP multipart MJPEG stream (served by another
  process) decoding each, and as packets; an MPEG-4 clip (the kind of codec that must decode
  every frame) read the way before and now;
- per detector (OpenCV's HOG people detector, the classical fire and smoke detector alone, and a
  YOLOv8-format ONNX model when one is given,
  e.g. the fall model `safetyhub models install fall` puts in the data dir): the service's own
  per-frame analysis (scale to 640 wide, motion gate, detect, track, zone rules) on the frames a
  2 frames/s camera analyses, with gating off and on: analysed frames/s per core;
- for the ONNX model: ms per inference through the pipeline (gating off) and the raw
  `session.run` time on the same input in the same run, and their ratio;
- a camera as its worker runs it (read every frame of the clip as it comes, sample 2 a second,
  gate, detect, track, rules, health), gated, with the best detector given: the way before (every
  frame decoded at full size) and the way now (JPEG packets, only the sampled frames decoded, at
  reduced scale), in alternation so load drifts alike: CPU per camera-second, and so cameras per
  core at 2 frames/s, before and after, and their ratio.

Prints a table and, as its last line, one JSON object (units in the keys). Not a test: CI does
not run it. Usage: scripts/bench_video.py [--video-seconds 60] [--model PATH] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import multiprocessing
import os
import pstats
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
from aiohttp import web

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
from services.video.domain.health import HealthMonitor
from services.video.worker import FrameAnalysis, _small_grey

FPS = 25
ANALYSIS_FPS = 2
WIDTH, HEIGHT = 1280, 720
ZONE = ZoneConfig(
    id="yard",
    polygon=[(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)],
    rules=[RuleConfig(rule="intrusion")],
)


def make_clip(path: Path, seconds: int, fourcc: str = "MJPG") -> Path:
    rng = np.random.default_rng(1)
    yard = cv2.GaussianBlur(rng.integers(30, 200, (HEIGHT, WIDTH, 3), dtype=np.uint8), (0, 0), 6)
    cv2.rectangle(yard, (100, 380), (500, 700), (90, 90, 90), -1)  # a shed
    cv2.line(yard, (0, 360), (WIDTH, 360), (160, 160, 160), 6)  # a fence
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (WIDTH, HEIGHT))
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


def cpu_s() -> float:
    """CPU seconds this process has run (all its threads), user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def decode_all(path: Path, frames: int) -> tuple[list[Frame], dict[str, float]]:
    """The sampled frames at full size, and per-frame costs in ms: a full decode (CPU and wall),
    a packet grab, a decode of a sampled frame at the analysis width's scale (CPU)."""
    costs: dict[str, float] = {}
    source = FrameSource(str(path), is_stream=False, timeout_s=5.0, packets=False)
    source.open()
    kept: list[Frame] = []
    cpu, wall = cpu_s(), time.perf_counter()
    for i in range(frames):
        frame = source.read()
        assert frame is not None
        if i % (FPS // ANALYSIS_FPS) == 0:
            kept.append(frame)
    costs["full_cpu"] = (cpu_s() - cpu) * 1000 / frames
    costs["full_wall"] = (time.perf_counter() - wall) * 1000 / frames
    source.close()
    packets = FrameSource(str(path), is_stream=False, timeout_s=5.0, width=640)
    packets.open()
    assert packets.raw, "the clip is not read as JPEG packets"
    cpu = cpu_s()
    for _ in range(frames):
        packets.grab()
    costs["grab_cpu"] = (cpu_s() - cpu) * 1000 / frames
    cpu, count = cpu_s(), 0
    for i in range(frames):
        packets.grab()
        if i % (FPS // ANALYSIS_FPS) == 0:
            assert packets.retrieve() is not None
            count += 1
    costs["reduced_cpu"] = (cpu_s() - cpu) * 1000 / count - costs["grab_cpu"] * (frames / count)
    packets.close()
    # What the motion gate alone would need (a grey picture at 1/8, 160 wide): the figure that
    # says whether decoding small for the gate first, and at 1/2 only for the detector, pays.
    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_FORMAT, -1)
    jpegs = [capture.read()[1].ravel() for _ in range(0, frames, FPS // ANALYSIS_FPS)]
    capture.release()
    cpu = cpu_s()
    for jpeg in jpegs:
        cv2.imdecode(jpeg, cv2.IMREAD_REDUCED_GRAYSCALE_8)
    costs["grey_eighth_cpu"] = (cpu_s() - cpu) * 1000 / len(jpegs)
    return kept, costs


def _serve_mjpeg(jpegs: list[bytes], frames: int, ports: multiprocessing.Queue[int]) -> None:
    """An IP camera's multipart MJPEG endpoint, as fast as it is read, in a process of its own."""

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame"})
        await response.prepare(request)
        try:
            for i in range(frames + 100):  # enough for the probe at open and the frames read
                jpeg = jpegs[i % len(jpegs)]
                head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                await response.write(head + jpeg + b"\r\n")
        except ConnectionError:
            pass
        return response

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/mjpeg", stream)
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        ports.put(runner.addresses[0][1])
        await asyncio.Event().wait()  # until terminated

    asyncio.run(serve())


def http_reading(clip: Path, frames: int) -> dict[str, float]:
    """Reading the clip's JPEGs from an HTTP multipart MJPEG stream, as from an IP camera (served
    by aiohttp in another process, so its work is not counted), per frame in ms of this process's
    CPU: every frame decoded (before), JPEG packets only (now)."""
    capture = cv2.VideoCapture(str(clip))
    capture.set(cv2.CAP_PROP_FORMAT, -1)
    jpegs = [capture.read()[1].tobytes() for _ in range(min(frames, 250))]
    capture.release()
    ports: multiprocessing.Queue[int] = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve_mjpeg, args=(jpegs, frames, ports), daemon=True)
    server.start()
    costs: dict[str, float] = {}
    try:
        url = f"http://127.0.0.1:{ports.get(timeout=30)}/mjpeg"
        for label, packets in (("before", False), ("after", True)):
            source = FrameSource(url, is_stream=True, timeout_s=10.0, width=640, packets=packets)
            source.open()
            assert source.raw is packets
            cpu = cpu_s()
            for _ in range(frames):
                if packets:
                    source.grab()
                else:
                    source.read()
            costs[label] = (cpu_s() - cpu) * 1000 / frames
            source.close()
    finally:
        server.terminate()
        server.join(10)
    return costs


def inter_coded(path: Path, seconds: int) -> dict[str, float]:
    """Reading a clip whose frames are coded against each other (MPEG-4 part 2 here: OpenCV's
    wheels carry no H.264 encoder), per frame in ms of CPU: every frame decoded and converted
    (before), every frame decoded and only the sampled ones converted to BGR (after)."""
    make_clip(path, seconds, fourcc="mp4v")
    costs: dict[str, float] = {}
    for label, packets in (("before", False), ("after", True)):
        source = FrameSource(str(path), is_stream=False, timeout_s=5.0, width=640, packets=packets)
        source.open()
        assert not source.raw
        cpu = cpu_s()
        for i in range(seconds * FPS):
            if not packets:
                source.read()
                continue
            source.grab()
            if i % (FPS // ANALYSIS_FPS) == 0:
                source.retrieve()
        costs[label] = (cpu_s() - cpu) * 1000 / (seconds * FPS)
        source.close()
    return costs


def camera_config(name: str, *, gated: bool) -> CameraConfig:
    return CameraConfig(
        site="bench",
        device=name,
        source="bench.avi",
        analysis_fps=ANALYSIS_FPS,
        motion=MotionConfig(enabled=gated),
        zones=[ZONE],
    )


def camera_run(
    clip: Path, detector: Detector, seconds: int, *, before: bool
) -> tuple[float, float, int, int]:
    """One camera as its worker runs it, on a clip time of `seconds`: CPU and wall seconds, frames
    decoded, detector runs. `before`: every frame decoded at full size as it was read (the way
    before packets); else packets, only the frames sampled decoded, at the analysis scale."""
    name = f"cam-{'before' if before else 'after'}-{detector.name}"
    analysis = FrameAnalysis(camera_config(name, gated=True), detector)
    monitor = HealthMonitor(10.0)
    source = FrameSource(str(clip), is_stream=False, timeout_s=5.0, width=640, packets=not before)
    source.open()
    runs, decoded = _count(analysis), 0
    cpu, wall = cpu_s(), time.perf_counter()
    for i in range(seconds * FPS):
        now = i / FPS  # the clip's own clock: the worker samples by the wall clock, at the same rate
        if before:
            frame = source.read()
            decoded += 1
            if not analysis.sampler.due(now):
                continue
        else:
            source.grab()
            if not analysis.sampler.pending(now):
                continue
            frame = source.retrieve()
            decoded += 1
            analysis.sampler.due(now)
        assert frame is not None
        analysed, _ = analysis.frame(frame, now)
        monitor.observe(_small_grey(analysed), now)
    used, elapsed = cpu_s() - cpu, time.perf_counter() - wall
    source.close()
    return used, elapsed, decoded, _count(analysis) - runs


def analyse(
    detector: Detector, frames: list[Frame], *, gated: bool, raw: ort.InferenceSession | None = None
) -> tuple[float, int, float]:
    """CPU seconds per analysed frame, how many frames ran the detector, and (with `raw`) the CPU
    seconds per bare `session.run` on the same input, timed right after each frame so load drifts
    alike."""
    camera = camera_config(f"cam-{'gated' if gated else 'ungated'}-{detector.name}", gated=gated)
    analysis = FrameAnalysis(camera, detector)
    before = _count(analysis)
    pipeline: list[float] = []
    bare: list[float] = []
    for i, frame in enumerate(frames):
        started = cpu_s()
        analysis.frame(frame, i / ANALYSIS_FPS)
        pipeline.append(cpu_s() - started)
        if raw is not None and isinstance(detector, OnnxDetector):
            tensor = detector.prepare(cv2.resize(frame, (640, 360), interpolation=cv2.INTER_AREA))[0]
            name = raw.get_inputs()[0].name
            started = cpu_s()
            raw.run(None, {name: tensor})
            bare.append(cpu_s() - started)
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


Result = dict[str, float | int | str | None]


def reading_figures(result: Result, costs: dict[str, float], analysed: int) -> None:
    result["decode_full_cpu_ms_per_frame"] = round(costs["full_cpu"], 3)
    result["decode_full_wall_ms_per_frame"] = round(costs["full_wall"], 3)
    result["grab_packet_cpu_ms_per_frame"] = round(costs["grab_cpu"], 3)
    result["decode_half_cpu_ms_per_frame"] = round(costs["reduced_cpu"], 3)
    result["decode_grey_eighth_cpu_ms_per_frame"] = round(costs["grey_eighth_cpu"], 3)
    print(
        f"decode a 720p frame: {costs['full_cpu']:.2f} ms CPU ({costs['full_wall']:.2f} ms wall), "
        f"{costs['full_cpu'] * FPS / 10:.1f} % of a core per camera decoding every frame"
    )
    print(
        f"grab a JPEG packet: {costs['grab_cpu']:.3f} ms CPU; decode a sampled frame at 1/2 scale: "
        f"{costs['reduced_cpu']:.2f} ms CPU "
        f"(grey at 1/8, the motion gate's size: {costs['grey_eighth_cpu']:.2f} ms)"
    )
    print(f"{analysed} frames analysed per run ({ANALYSIS_FPS} of every {FPS})")


def detector_figures(
    result: Result, name: str, detector: Detector, frames: list[Frame], model: Path | None
) -> None:
    raw = raw_session(model) if name == "onnx" and model is not None else None
    if raw is not None:  # first runs allocate: not part of either figure
        analyse(detector, frames[:2], gated=False, raw=raw)
    ungated, runs_off, bare = analyse(detector, frames, gated=False, raw=raw)
    gated, runs_on, _ = analyse(detector, frames, gated=True)
    result[f"{name}_fps_per_core_ungated"] = round(1 / ungated, 2)
    result[f"{name}_fps_per_core_gated"] = round(1 / gated, 2)
    result[f"{name}_cpu_ms_per_frame_ungated"] = round(ungated * 1000, 2)
    result[f"{name}_cpu_ms_per_frame_gated"] = round(gated * 1000, 2)
    result[f"{name}_detector_runs_gated"] = runs_on
    print(
        f"{name}: ungated {1 / ungated:.1f} frames/s per core "
        f"({ungated * 1000:.1f} ms CPU, detector on {runs_off})"
    )
    print(
        f"{name}: gated {1 / gated:.1f} frames/s per core ({gated * 1000:.1f} ms CPU, detector on {runs_on})"
    )
    if raw is not None:
        result["onnx_raw_cpu_ms"] = round(bare * 1000, 2)
        result["onnx_pipeline_cpu_ms"] = round(ungated * 1000, 2)
        result["onnx_pipeline_ratio_to_raw"] = round(ungated / bare, 3)
        print(f"onnx: raw session.run {bare * 1000:.1f} ms CPU, pipeline {ungated * 1000:.1f} ms CPU")
        print(f"onnx: pipeline / raw = {ungated / bare:.3f}")


def camera_figures(
    result: Result, clip: Path, best: str, detector: Detector, *, seconds: int, rounds: int
) -> None:
    camera_run(clip, detector, min(seconds, 4), before=False)  # first runs allocate
    totals = {True: [0.0, 0.0, 0, 0], False: [0.0, 0.0, 0, 0]}
    for _ in range(rounds):
        for before in (True, False):
            for k, v in enumerate(camera_run(clip, detector, seconds, before=before)):
                totals[before][k] += v
    camera_seconds = seconds * rounds
    for before, label in ((True, "before"), (False, "after")):
        used, elapsed, decoded, runs = totals[before]
        cpu_ms, wall_ms = used * 1000 / camera_seconds, elapsed * 1000 / camera_seconds
        result[f"camera_cpu_ms_per_camera_second_{label}"] = round(cpu_ms, 1)
        result[f"camera_wall_ms_per_camera_second_{label}"] = round(wall_ms, 1)
        result[f"decoded_frames_per_camera_second_{label}"] = round(decoded / camera_seconds, 2)
        result[f"detector_runs_per_camera_second_{label}"] = round(runs / camera_seconds, 2)
        result[f"cameras_per_core_at_2fps_gated_{label}"] = round(1000 / cpu_ms, 2)
        result[f"cameras_per_core_at_2fps_gated_by_wall_{label}"] = round(1000 / wall_ms, 2)
        print(
            f"camera {label}: {cpu_ms:.1f} ms CPU ({wall_ms:.1f} ms wall) per camera-second, "
            f"{decoded / camera_seconds:.1f} frames decoded, "
            f"{runs / camera_seconds:.2f} detector runs a second: "
            f"{1000 / cpu_ms:.2f} cameras per core at {ANALYSIS_FPS} frames/s, gated, {best}"
        )
    ratio = totals[True][0] / totals[False][0]
    result["cameras_per_core_at_2fps_gated_detector"] = best
    result["cameras_per_core_ratio_after_to_before"] = round(ratio, 2)
    print(f"cameras per core, after / before: {ratio:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video-seconds", type=int, default=60)
    parser.add_argument(
        "--model", type=Path, default=None, help="a YOLOv8-format .onnx (e.g. the fall model)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="camera runs before and after, alternated")
    parser.add_argument("--profile", action="store_true", help="cProfile a camera run after, top functions")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    result: Result = {"video": f"{WIDTH}x{HEIGHT} {FPS} fps MJPEG"}
    with tempfile.TemporaryDirectory(prefix="bench-video-") as tmp:
        clip = make_clip(Path(tmp) / "yard.avi", args.video_seconds)
        frames, costs = decode_all(clip, args.video_seconds * FPS)
        reading_figures(result, costs, len(frames))
        http = http_reading(clip, min(args.video_seconds, 10) * FPS)
        result["http_read_cpu_ms_per_frame_before"] = round(http["before"], 3)
        result["http_read_cpu_ms_per_frame_after"] = round(http["after"], 3)
        print(
            f"HTTP MJPEG stream, read here: {http['before']:.2f} ms CPU per frame decoding each, "
            f"{http['after']:.3f} ms as JPEG packets"
        )
        inter = inter_coded(Path(tmp) / "yard.mp4", min(args.video_seconds, 10))
        result["inter_coded_read_cpu_ms_per_frame_before"] = round(inter["before"], 3)
        result["inter_coded_read_cpu_ms_per_frame_after"] = round(inter["after"], 3)
        print(
            f"MPEG-4 720p, every frame decoded: {inter['before']:.2f} ms CPU per frame, each converted "
            f"to BGR; {inter['after']:.2f} ms, only the sampled ones converted"
        )
        detectors: list[tuple[str, Detector]] = [
            ("hog", HogDetector(DetectorConfig())),
            # The classical fire and smoke detector alone (colour and flicker, no model).
            ("fire", build_detector(DetectorConfig(kind="none"), FireConfig())),
        ]
        if args.model is not None:
            detectors.append(
                ("onnx", OnnxDetector(DetectorConfig(kind="onnx", model=str(args.model), threads=1)))
            )
        for name, detector in detectors:
            detector_figures(result, name, detector, frames, args.model)
        best, detector = detectors[-1] if args.model is not None else detectors[0]
        camera_figures(result, clip, best, detector, seconds=args.video_seconds, rounds=args.rounds)
        if args.profile:
            profile = cProfile.Profile()
            profile.runcall(camera_run, clip, detector, args.video_seconds, before=False)
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(15)
            print(out.getvalue())
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
