"""The `video:` section of the hub's config: the cameras to analyse and how.

A camera names a device of the site files (`site`, `device`: a device of type camera); its zones
and masks are polygons in fractions of the picture (0..1, origin top-left), so they survive a
change of resolution. Checked strictly at start-up: an unknown key or a bad value stops it with
file, line and key; a camera whose device the site files do not declare, whose model file is
missing or not a YOLOv8-format ONNX model, or whose stream does not open, is reported unhealthy
(metric, /readyz) and retried while the others run.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from services.common.settings import Positive, PositiveFloat
from services.common.types import DeviceId, Slug

Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Point = tuple[Fraction, Fraction]
PolygonIn = Annotated[list[Point], msgspec.Meta(min_length=3, max_length=64)]
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")


Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ClockTime = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]\Z")]


class ScheduleConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # In the site's timezone (its `timezone` in the site files). start == end: all day.
    days: Annotated[list[Day], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    )
    start: ClockTime = "00:00"
    end: ClockTime = "00:00"


class PpeItemConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # The model's classes meaning the item is worn ...
    worn: Annotated[list[Label], msgspec.Meta(min_length=1)]
    # ... and meaning it is not (`no_helmet`, `NO-Hardhat`, `head`); none: a person is without
    # the item whenever no worn class is seen on them.
    missing: list[Label] = []


def _default_ppe() -> dict[str, PpeItemConfig]:
    return {
        "helmet": PpeItemConfig(worn=["helmet"], missing=["no_helmet"]),
        "vest": PpeItemConfig(worn=["vest"], missing=["no_vest"]),
    }


# The classes a rule watches when it names none.
_DEFAULT_LABELS = {"fire": ("fire",), "smoke": ("smoke",)}


class RuleConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    rule: Literal["intrusion", "loitering", "person_down", "fire", "smoke", "ppe_violation"]
    # The detector's classes the rule watches; absent: [fire] for fire, [smoke] for smoke,
    # [person] for the others.
    labels: Annotated[list[Label], msgspec.Meta(min_length=1)] | None = None
    # loitering: seconds in the zone; person_down: seconds down and still; fire / smoke: seconds
    # it persists; ppe_violation: seconds without an item (all required).
    seconds: PositiveFloat | None = None
    # person_down: classes that are a person down whatever their box, e.g. [Fall] of the fall model.
    down_labels: list[Label] = []
    # When the rule is armed; absent: always.
    schedule: ScheduleConfig | None = None
    # ppe_violation: the items required in the zone, each with the model's classes for it;
    # absent: helmet (helmet / no_helmet) and vest (vest / no_vest).
    ppe: Annotated[dict[Label, PpeItemConfig], msgspec.Meta(min_length=1)] | None = None

    def __post_init__(self) -> None:
        if self.rule != "intrusion" and self.seconds is None:
            raise ValueError(f"a {self.rule} rule needs `seconds`")
        if self.rule == "intrusion" and self.seconds is not None:
            raise ValueError("an intrusion rule takes no `seconds`")
        if self.rule != "person_down" and self.down_labels:
            raise ValueError(f"`down_labels` is for person_down rules, not {self.rule}")
        if self.rule != "ppe_violation" and self.ppe is not None:
            raise ValueError(f"`ppe` is for ppe_violation rules, not {self.rule}")

    @property
    def required(self) -> dict[str, PpeItemConfig]:
        """ppe_violation: the items required, as configured or by default."""
        return self.ppe if self.ppe is not None else _default_ppe()

    @property
    def watched(self) -> tuple[str, ...]:
        if self.labels is not None:
            return tuple(self.labels)
        return _DEFAULT_LABELS.get(self.rule, ("person",))


class ZoneConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    id: Slug
    polygon: PolygonIn
    rules: Annotated[list[RuleConfig], msgspec.Meta(min_length=1)]


class LineConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    id: Slug
    # From A to B; its sides are named as seen walking from A to B on the picture.
    points: Annotated[list[Point], msgspec.Meta(min_length=2, max_length=2)]
    direction: Literal["any", "left_to_right", "right_to_left"] = "any"
    labels: Annotated[list[Label], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["person"]
    )

    def __post_init__(self) -> None:
        if self.points[0] == self.points[1]:
            raise ValueError("a line needs two different points")


class DetectorConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # hog: OpenCV's built-in people detector (nothing to download); onnx: a YOLOv8-format model;
    # none: no object detector (a camera watching for fire and smoke only, with `fire:`).
    kind: Literal["hog", "onnx", "none"] = "hog"
    model: str | None = None  # onnx: path of the .onnx file (relative: to the working directory)
    # onnx: the input's side when the model does not fix it.
    input_size: Annotated[int, msgspec.Meta(ge=32, le=4096, multiple_of=32)] = 640
    confidence: Fraction = 0.5
    iou: Fraction = 0.45
    threads: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1

    def __post_init__(self) -> None:
        if self.kind == "onnx" and not self.model:
            raise ValueError("an onnx detector needs `model`, the path of its .onnx file")
        if self.kind != "onnx" and self.model is not None:
            raise ValueError(f"the {self.kind} detector takes no `model`")


class FireConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The classical fire and smoke detector (colour and flicker), run beside `detector`."""

    # The share of the picture a fire or smoke region covers at least.
    min_area: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.001
    # The analysed frames over which flicker, staying and growth are judged (at 2 frames/s, 8 is
    # 4 s): nothing is reported before the camera has analysed this many.
    window: Annotated[int, msgspec.Meta(ge=3, le=64)] = 8
    # fire: the share of the window's frames on which a pixel of the region switches between
    # flame colour and not, on average. A steady orange light has none.
    min_flicker: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.08
    # Whether to look for smoke as well.
    smoke: bool = True
    # smoke: what the region covered over the window, at least this many times what it covered
    # at its start (a plume grows or drifts).
    min_growth: Annotated[float, msgspec.Meta(gt=1.0, le=100.0)] = 1.3


class MotionConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # false: detect on every analysed frame.
    enabled: bool = True
    # The share of the (unmasked) picture that must change for detection to run.
    min_area: Fraction = 0.002
    # Areas whose movement never counts: trees, a road, a clock.
    masks: list[PolygonIn] = []
    history: Annotated[int, msgspec.Meta(ge=10, le=10_000)] = 200
    var_threshold: PositiveFloat = 25.0


class TrackerConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # Analysed frames with a match before a track counts (debouncing) ...
    min_hits: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3
    # ... and without one before it is dropped.
    max_missed: Annotated[int, msgspec.Meta(ge=0, le=100)] = 5
    min_iou: Fraction = 0.3


class CameraConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    site: Slug
    device: DeviceId
    # rtsp(s)://, http(s):// (MJPEG), or a video file, played in a loop (demos and tests).
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    analysis_fps: PositiveFloat = 2.0
    # Frames are scaled down to this width before analysis (0: as delivered).
    width: Annotated[int, msgspec.Meta(ge=0, le=7680)] = 640
    detector: DetectorConfig = DetectorConfig()
    # The classical fire and smoke detector, beside `detector`; absent: not run. Rules `fire` and
    # `smoke` also work with an ONNX model of such classes (as `detector`, naming its labels).
    fire: FireConfig | None = None
    motion: MotionConfig = MotionConfig()
    tracker: TrackerConfig = TrackerConfig()
    zones: list[ZoneConfig] = []
    # Lines whose crossing fires `video.line_crossing`.
    lines: list[LineConfig] = []

    def __post_init__(self) -> None:
        # A firing names its zone or line by id alone: one id, one place.
        ids = [zone.id for zone in self.zones] + [line.id for line in self.lines]
        twice = sorted({z for z in ids if ids.count(z) > 1})
        if twice:
            raise ValueError(f"zone and line ids must be unique per camera: {', '.join(twice)}")

    @property
    def is_stream(self) -> bool:
        return self.source.lower().startswith(_STREAM_SCHEMES)

    @property
    def name(self) -> str:
        return f"{self.site}/{self.device}"


class VideoConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    cameras: list[CameraConfig] = []
    # A camera that cannot be opened or drops out is tried again after 1 s, doubling up to this.
    retry_max_s: PositiveFloat = 30.0
    # A stream that delivers no frame for this long has dropped out.
    stall_timeout_s: PositiveFloat = 10.0
    # A picture frozen, covered or blinded this long is reported (video.camera_health), as is
    # its end.
    health_hold_s: PositiveFloat = 10.0
    jpeg_quality: Annotated[int, msgspec.Meta(ge=10, le=100)] = 85
    # Snapshots older than this are deleted (hourly), as the store drops observations after
    # store.retention_days: keep the two equal so a stored detection's snapshot can be read.
    snapshot_retention_days: Positive = 30
    # Seconds between checks of the config file for an edited `video:` section, applied without
    # a restart (0: never). `max_pending` is read at start-up only.
    reload_s: Annotated[float, msgspec.Meta(ge=0.0)] = 5.0
    # Rule firings waiting to be stored and published, at most; past it a camera's worker waits
    # (dropping frames meanwhile), never a detection.
    max_pending: Positive = 1_000

    def __post_init__(self) -> None:
        names = [camera.name for camera in self.cameras]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"a camera is configured twice: {', '.join(twice)}")
