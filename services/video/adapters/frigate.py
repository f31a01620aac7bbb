"""Frigate NVR events as `video.*` observations: a site already running Frigate plugs in without
the video service's own cameras.

Frigate publishes on MQTT `frigate/events` a JSON object `{type: new|update|end, before, after}`
per tracked object (REFERENCES: `id`, `camera`, `label`, `score`, `top_score`, `false_positive`,
`box` in pixels of the detect stream, `current_zones`, `entered_zones`, `start_time`,
`frame_time`, `has_snapshot`, ...). A zone newly in `after.entered_zones` is an intrusion into it,
when the camera's mapping names that zone restricted: one `video.intrusion` observation with the
same fields as the service's own. Pure: the MQTT bridge feeds messages in and publishes what comes
out through ingest's encoder; a message that cannot be read raises FrigateEventError, whose reason
the bridge dead-letters.

The observation's id is derived from the Frigate event id and the zone (a ULID stamped with the
object's start), so the many `update` messages of one object and a redelivered message all name
the same observation, whatever characters Frigate's ids and zone names hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import msgspec

from services.common.contracts.ids import derived_id
from services.common.errors import SafetyhubError
from services.ingest.domain.contract import BoxIn, ObservationIn

INTRUSION = "video.intrusion"


class FrigateEventError(SafetyhubError):
    """A `frigate/events` message that is not a Frigate event this mapping can read."""


class FrigateObject(msgspec.Struct, frozen=True, kw_only=True):
    # Frigate adds fields between releases: the ones read here are checked, the rest ignored.
    id: str
    camera: str
    label: str
    score: float = 0.0
    top_score: float = 0.0
    false_positive: bool = False
    box: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2 in detect pixels
    entered_zones: list[str] = []
    current_zones: list[str] = []
    start_time: float = 0.0
    frame_time: float | None = None
    has_snapshot: bool = False


class FrigateEvent(msgspec.Struct, frozen=True, kw_only=True):
    type: Literal["new", "update", "end"]
    before: FrigateObject | None = None
    after: FrigateObject


@dataclass(frozen=True, slots=True)
class FrigateCamera:
    """Where one Frigate camera's events go: a camera device of the site files."""

    site: str
    device: str
    detect_width: int  # the detect stream's size, which Frigate's boxes are in
    detect_height: int
    restricted_zones: frozenset[str]  # Frigate zones whose entry is an intrusion
    labels: frozenset[str] = frozenset({"person"})
    # Base URL of the Frigate API, for the snapshot reference; None: no reference.
    frigate_url: str | None = None
    # Frigate zone -> the site's zone it lies in (attribute `zone`); unlisted: the Frigate name.
    site_zones: Mapping[str, str] = field(default_factory=dict)
    # Watched label -> the observation's kind; unlisted: `video.intrusion`.
    kinds: Mapping[str, str] = field(default_factory=dict)


_DECODE = msgspec.json.Decoder(FrigateEvent)


def decode(payload: bytes) -> FrigateEvent:
    try:
        return _DECODE.decode(payload)
    except msgspec.ValidationError as err:
        raise FrigateEventError(f"not a Frigate event: {err}") from err
    except msgspec.DecodeError as err:
        raise FrigateEventError(f"not JSON: {err}") from err


def observations(event: FrigateEvent, cameras: Mapping[str, FrigateCamera]) -> list[ObservationIn]:
    """The `video.intrusion` observations (or the kind the camera names for the label) an
    event means: none for most updates."""
    after = event.after
    camera = cameras.get(after.camera)
    if camera is None or after.false_positive or after.label not in camera.labels:
        return []
    # Frigate sends `new` when an object stops being a false positive, with `before` the state
    # it had as one: the zones it entered meanwhile were never reported, so they count now.
    before = event.before
    reported = before is not None and event.type != "new" and not before.false_positive
    earlier = set(before.entered_zones) if before is not None and reported else set()
    entered = [z for z in after.entered_zones if z not in earlier and z in camera.restricted_zones]
    if not entered:
        return []
    when = datetime.fromtimestamp(after.frame_time or after.start_time, UTC)
    box = _box(after.box, camera)
    snapshot = (
        f"{camera.frigate_url.rstrip('/')}/api/events/{after.id}/snapshot.jpg"
        if camera.frigate_url and after.has_snapshot
        else None
    )
    start_ms = int(after.start_time * 1000)
    found = [
        ObservationIn(
            id=derived_id(start_ms, "frigate", camera.site, camera.device, after.id, zone),
            site=camera.site,
            device=camera.device,
            kind=camera.kinds.get(after.label, INTRUSION),
            time=when,
            confidence=max(0.0, min(1.0, after.top_score or after.score)),
            box=box,
            snapshot=snapshot,
            attributes={
                "camera": camera.device,
                "zone": camera.site_zones.get(zone, zone),
                "frigate_zone": zone,
                "track_id": after.id,
                "label": after.label,
                "source": "frigate",
                "frigate_camera": after.camera,
            },
        )
        for zone in entered
    ]
    try:
        # Built from someone else's message: checked as a posted observation would be.
        return [msgspec.convert(msgspec.to_builtins(item), ObservationIn) for item in found]
    except msgspec.ValidationError as err:
        raise FrigateEventError(f"the event makes no valid observation: {err}") from err


def _box(box: tuple[float, float, float, float] | None, camera: FrigateCamera) -> BoxIn | None:
    if box is None:
        return None
    width, height = float(camera.detect_width), float(camera.detect_height)
    x1, y1 = max(0.0, min(box[0], width)), max(0.0, min(box[1], height))
    x2, y2 = max(x1, min(box[2], width)), max(y1, min(box[3], height))
    return BoxIn(x=x1 / width, y=y1 / height, width=(x2 - x1) / width, height=(y2 - y1) / height)
