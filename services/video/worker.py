"""One camera's worker thread: read, sample, gate on motion, detect, track, apply the zone rules.

OpenCV and ONNX Runtime block, so each camera runs in a thread of its own and the event loop only
ever sees what fired: a `CameraEvent` with the firing and its JPEG snapshots, handed over through
`deliver` (which waits while the service's queue is full: the worker then reads no frames, so
frames are dropped, never a detection). Frames themselves never leave the thread.

A camera that cannot be opened, whose detector cannot be built, or that drops out is reported
(`CameraHealth`, metrics, a log line) and tried again after 1 s, doubling up to `retry_max_s`. A
frame that cannot be decoded or analysed is counted and skipped; nothing stops the worker but
`stop()`. Frames let go by the sampler are never decoded when the camera sends MJPEG.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import cast

import cv2

from services.common.logging import get_logger
from services.video import metrics
from services.video.adapters.detectors import Detector, DetectorError, build_detector
from services.video.adapters.faces import FaceBlur
from services.video.adapters.motion import MotionGate
from services.video.adapters.source import Frame, FrameSource, SourceError
from services.video.config import CameraConfig, VideoConfig
from services.video.domain.health import Condition, HealthMonitor
from services.video.domain.lines import CameraLine, Direction, LineRules
from services.video.domain.pacing import FrameSampler, RateMeter
from services.video.domain.ppe import PpeItem
from services.video.domain.rules import CameraZone, Firing, RuleKind, ZoneRule, ZoneRules
from services.video.domain.schedule import parse
from services.video.domain.tracker import IouTracker

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CameraEvent:
    camera: CameraConfig
    tenant: str
    firing: Firing
    taken: datetime
    frame_size: tuple[int, int]  # width, height of the analysed frame the box refers to
    jpeg: bytes
    blurred: bytes
    faces: int


@dataclass(frozen=True, slots=True)
class HealthEvent:
    """A change of what the camera's picture (or its absence) says about the camera."""

    camera: CameraConfig
    tenant: str
    condition: Condition
    taken: datetime


AnyEvent = CameraEvent | HealthEvent


class CameraHealth:
    """What /readyz and the logs say about one camera; written by its worker, read by the loop."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._problem: str | None = "starting"
        self.analysis_fps = 0.0

    def up(self) -> None:
        with self._lock:
            self._problem = None
        metrics.CAMERA_UP.labels(self.name).set(1)

    def down(self, reason: str) -> None:
        with self._lock:
            self._problem = reason
        metrics.CAMERA_UP.labels(self.name).set(0)

    @property
    def problem(self) -> str | None:
        with self._lock:
            return self._problem


def lines_of(camera: CameraConfig) -> list[CameraLine]:
    return [
        CameraLine(
            line.id,
            (float(line.points[0][0]), float(line.points[0][1])),
            (float(line.points[1][0]), float(line.points[1][1])),
            Direction(line.direction),
            frozenset(line.labels),
        )
        for line in camera.lines
    ]


def zones_of(camera: CameraConfig) -> list[CameraZone]:
    return [
        CameraZone(
            zone.id,
            tuple((float(x), float(y)) for x, y in zone.polygon),
            tuple(
                ZoneRule(
                    RuleKind(r.rule),
                    frozenset(r.watched),
                    r.seconds or 0.0,
                    frozenset(r.down_labels),
                    parse(r.schedule.days, r.schedule.start, r.schedule.end) if r.schedule else None,
                    tuple(
                        PpeItem(name, frozenset(item.worn), frozenset(item.missing))
                        for name, item in (r.required.items() if r.rule == "ppe_violation" else ())
                    ),
                )
                for r in zone.rules
            ),
        )
        for zone in camera.zones
    ]


class FrameAnalysis:
    """The per-connection state of one camera: sampler, motion gate, tracker, rules."""

    def __init__(self, camera: CameraConfig, detector: Detector, timezone: tzinfo = UTC) -> None:
        self.camera = camera
        self.timezone = timezone  # the site's: scheduled rules are armed by its local time
        self.detector = detector
        self.sampler = FrameSampler(camera.analysis_fps)
        self.rate = RateMeter()
        self.gate = MotionGate(camera.motion) if camera.motion.enabled else None
        t = camera.tracker
        self.tracker = IouTracker(min_iou=t.min_iou, min_hits=t.min_hits, max_missed=t.max_missed)
        self.rules = ZoneRules(zones_of(camera))
        self.lines = LineRules(lines_of(camera))
        name = camera.name
        self.analysed = metrics.FRAMES.labels(name, "analysed")
        self.still = metrics.FRAMES.labels(name, "still")
        self.skipped = metrics.FRAMES.labels(name, "skipped")
        self.corrupt = metrics.FRAMES.labels(name, "corrupt")
        self.fps = metrics.ANALYSIS_FPS.labels(name)
        self.inference = metrics.INFERENCE_SECONDS.labels(detector.name)

    def frame(self, frame: Frame, now: float) -> tuple[Frame, list[Firing]]:
        """Analyse one sampled frame at monotonic time `now`: what fired, and the frame analysed."""
        frame = _scaled(frame, self.camera.width)
        height, width = frame.shape[:2]
        if self.gate is not None and not self.gate.moving(frame):
            self.still.inc()
            tracks = self.tracker.hold(now)
        else:
            started = time.perf_counter()
            detections = self.detector.detect(frame)
            self.inference.observe(time.perf_counter() - started)
            self.analysed.inc()
            tracks = self.tracker.update(detections, now)
        self.rate.add(now)
        self.fps.set(self.rate.rate(now))
        firings = self.rules.evaluate(tracks, width, height, now, datetime.now(self.timezone))
        return frame, firings + self.lines.evaluate(tracks, width, height, now)


def _small_grey(frame: Frame) -> Frame:
    height, width = frame.shape[:2]
    small = cv2.resize(frame, (64, max(1, round(height * 64 / width))), interpolation=cv2.INTER_AREA)
    return cast(Frame, cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))


def _scaled(frame: Frame, width: int) -> Frame:
    height, current = frame.shape[:2]
    if width <= 0 or current <= width:
        return frame
    scaled = cv2.resize(frame, (width, max(1, round(height * width / current))), interpolation=cv2.INTER_AREA)
    return cast(Frame, scaled)


class CameraWorker:
    def __init__(
        self,
        camera: CameraConfig,
        tenant: str,
        settings: VideoConfig,
        deliver: Callable[[AnyEvent], None],
        *,
        health: CameraHealth,
        timezone: tzinfo = UTC,
    ) -> None:
        self._timezone = timezone
        self._camera = camera
        self._tenant = tenant
        self._settings = settings
        self._deliver = deliver
        self.health = health
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"video-{camera.name}", daemon=True)
        self._blur: FaceBlur | None = None
        self._monitor = HealthMonitor(settings.health_hold_s)
        self._log = log.bind(site=camera.site, device=camera.device)

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        failures = 0
        detector: Detector | None = None
        while not self._stop.is_set():
            source = FrameSource(
                self._camera.source,
                is_stream=self._camera.is_stream,
                timeout_s=self._settings.stall_timeout_s,
                width=self._camera.width,
                decoded=metrics.DECODED.labels(self._camera.name),
            )
            try:
                if detector is None:
                    detector = build_detector(self._camera.detector, self._camera.fire)
                if self._blur is None:
                    self._blur = FaceBlur()
                source.open()
                # Opened: a drop-out after hours of frames starts the back-off from 1 s again.
                failures = 0
                self.health.up()
                self._log.info("camera_open", fps=source.fps, detector=detector.name, packets=source.raw)
                self._read(source, FrameAnalysis(self._camera, detector, self._timezone))
            except (SourceError, DetectorError) as err:
                failures += 1
                self._failed(type(err).__name__, str(err), failures)
            except Exception as err:  # a bug or an OpenCV error: report and retry, never die
                failures += 1
                self._log.exception("camera_worker_error")
                self._failed("error", f"{type(err).__name__}: {err}", failures)
            finally:
                source.close()

    def _failed(self, reason: str, detail: str, failures: int) -> None:
        delay = min(self._settings.retry_max_s, 2.0 ** (failures - 1))
        self.health.down(detail)
        if self._monitor.reported is not Condition.OFFLINE:
            self._monitor.reported = Condition.OFFLINE
            self._report(Condition.OFFLINE)
        metrics.CAMERA_FAILURES.labels(self._camera.name, reason).inc()
        self._log.warning("camera_unavailable", reason=detail, retry_in_s=delay, failures=failures)
        self._stop.wait(delay)

    def _read(self, source: FrameSource, analysis: FrameAnalysis) -> None:
        started = time.monotonic()
        count = 0
        while not self._stop.is_set():
            if not self._camera.is_stream:
                # A file is played at its own frame rate, as a camera would deliver it.
                wait = started + count / source.fps - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
            source.grab()
            count += 1
            now = time.monotonic()
            # Only a frame to be analysed is decoded (an MJPEG frame let go costs a copy).
            if not analysis.sampler.pending(now):
                analysis.skipped.inc()
                continue
            frame = source.retrieve()
            if frame is None:
                analysis.corrupt.inc()
                continue
            analysis.sampler.due(now)
            try:
                analysed, firings = analysis.frame(frame, now)
            except cv2.error:
                analysis.corrupt.inc()
                self._log.warning("frame_not_analysed", exc_info=True)
                continue
            for firing in firings:
                self._deliver(self._event(analysed, firing))
            changed = self._monitor.observe(_small_grey(analysed), now)
            if changed is not None:
                self._report(changed)

    def _report(self, condition: Condition) -> None:
        self._log.info("camera_condition", condition=condition.value)
        self._deliver(HealthEvent(self._camera, self._tenant, condition, datetime.now(UTC)))

    def _event(self, frame: Frame, firing: Firing) -> CameraEvent:
        assert self._blur is not None
        quality = [cv2.IMWRITE_JPEG_QUALITY, self._settings.jpeg_quality]
        blurred, faces = self._blur.blurred(frame)
        ok_raw, raw = cv2.imencode(".jpg", frame, quality)
        ok_blur, soft = cv2.imencode(".jpg", blurred, quality)
        if not (ok_raw and ok_blur):
            raise SourceError("a snapshot could not be encoded as JPEG")
        height, width = frame.shape[:2]
        return CameraEvent(
            self._camera,
            self._tenant,
            firing,
            datetime.now(UTC),
            (width, height),
            raw.tobytes(),
            soft.tobytes(),
            faces,
        )
