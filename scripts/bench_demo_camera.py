#!/usr/bin/env python3
"""Demo camera benchmark: what the demo's simulated camera costs, on one thread.

Plays the demo camera's part of a scripted gas release as the demo runs it: a quiet unit, then a
150 s release (the simulator's level over time), then quiet again, at the stream's 5 frames/s.
Each frame is drawn and JPEG encoded (the demo's stream), decoded (the camera's worker), and 2 a
second go through the video service's own analysis as the demo configures it (320 wide, motion
gate, fire and smoke detector, tracker, zone rules). Time is simulated, so the run is as fast as
the machine; CPU time is measured per stage. Prints a table and, as its last line, one JSON
object with the CPU share of one core the camera takes and the release's smoke firings.
Not a test: CI does not run it.
Usage: scripts/bench_demo_camera.py [--quiet-seconds 60]
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np

from services.hub.demo_camera import DemoCamera, camera_config
from services.simulator import alarm_scenarios
from services.simulator.camera_scene import STREAM_FPS
from services.simulator.camera_stream import FrameMaker
from services.simulator.plant import ScenarioConfig
from services.video.adapters.detectors import build_detector
from services.video.worker import FrameAnalysis


def main() -> None:
    parser = argparse.ArgumentParser(description="What the demo camera costs, on one thread.")
    parser.add_argument(
        "--quiet-seconds", type=float, default=60.0, help="quiet before and after the release"
    )
    args = parser.parse_args()
    cv2.setNumThreads(1)
    length = ScenarioConfig().gas_release_s
    camera = camera_config(
        DemoCamera(alarm_scenarios.SITE, alarm_scenarios.RELEASE_CAMERA, "fcc-2"), "http://x"
    )
    analysis = FrameAnalysis(camera, build_detector(camera.detector, camera.fire))
    maker = FrameMaker(label=camera.device.upper())
    spent = {"draw and encode": 0.0, "decode": 0.0, "analyse": 0.0}
    firings: list[float] = []
    total_s = 2 * args.quiet_seconds + length
    frames = int(total_s * STREAM_FPS)
    for n in range(frames):
        t = n / STREAM_FPS
        age = t - args.quiet_seconds
        level = alarm_scenarios.release_level(age, length) if 0 <= age < length else 0.0
        started = time.process_time()
        jpeg = maker.next(level)
        drawn = time.process_time()
        frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        decoded = time.process_time()
        spent["draw and encode"] += drawn - started
        spent["decode"] += decoded - drawn
        if analysis.sampler.due(t):
            _, fired = analysis.frame(frame, t)
            spent["analyse"] += time.process_time() - decoded
            firings += [round(age, 1) for f in fired if f.rule.value == "smoke"]
    print(f"{frames} frames, {total_s:.0f} s of video ({length:.0f} s release), one thread")
    print(f"{'stage':<18}{'CPU s':>8}{'% of a core':>14}")
    for stage, seconds in spent.items():
        print(f"{stage:<18}{seconds:>8.2f}{100 * seconds / total_s:>14.2f}")
    share = 100 * sum(spent.values()) / total_s
    print(f"{'camera in all':<18}{sum(spent.values()):>8.2f}{share:>14.2f}")
    print(f"smoke firings at release age (s): {firings}")
    print(json.dumps({"core_percent": round(share, 2), "smoke_firings_at_s": firings, "video_s": total_s}))


if __name__ == "__main__":
    main()
