"""The `ingest.mqtt.frigate:` section: a Frigate NVR's events, read from the bridge's broker, and
how its cameras, zones and labels map to the site registry's cameras, zones and kinds.

```yaml
ingest:
  mqtt:
    url: mqtt://broker:1883
    frigate:
      topic_prefix: frigate                 # Frigate's mqtt.topic_prefix: reads frigate/events
      url: http://frigate.plant.example:5000  # snapshot references point at Frigate's API
      cameras:
        - name: tank_farm_sw                # the camera's name in Frigate's config
          site: ulsan-refinery
          device: cam-tf-501                # a device of type camera in the site files
          detect: {width: 1280, height: 720}
          zones: {bund_t501: tank-farm}     # Frigate zones watched -> the site's zones
          labels: {person: video.intrusion} # watched labels -> the observation's kind
```

Checked when the file is loaded: an unknown key or a bad value stops start-up with file, line and
key. Whether the devices are cameras and the zones the sites' is checked per message against the
registry in use (it is reloaded while the hub runs).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import msgspec

from services.common.types import DeviceId, Kind, Slug

_LEVEL = r"^[^/+#]+$"  # one topic level, no wildcard
TopicLevel = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=_LEVEL)]
Pixels = Annotated[int, msgspec.Meta(ge=1, le=16_384)]


class DetectSize(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The camera's detect stream size in Frigate (`detect.width/height`): its boxes are in it."""

    width: Pixels
    height: Pixels


class FrigateCameraConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # The camera's name in Frigate's config (`after.camera` of its events).
    name: TopicLevel
    site: Slug
    device: DeviceId
    detect: DetectSize
    # Frigate zone -> site zone. An object newly entering one of these is a detection.
    zones: Annotated[dict[str, Slug], msgspec.Meta(min_length=1)]
    # Frigate label -> kind; labels not listed are not watched (a car, a dog ...).
    labels: Annotated[dict[str, Kind], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: {"person": "video.intrusion"}
    )


class FrigateConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    # Frigate's `mqtt.topic_prefix`; events are on `<prefix>/events`.
    topic_prefix: TopicLevel = "frigate"
    # Base URL of Frigate's API, for the snapshot reference of an event with a snapshot.
    url: str | None = None
    # Where each camera's events go. Events of cameras not listed are not readings.
    cameras: Annotated[list[FrigateCameraConfig], msgspec.Meta(min_length=1)]

    def __post_init__(self) -> None:
        names = [camera.name for camera in self.cameras]
        if len(set(names)) != len(names):
            raise ValueError("cameras: a Frigate camera is listed twice")
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"url: {self.url!r} is not http(s)://host[:port]")

    @property
    def topic(self) -> str:
        return f"{self.topic_prefix}/events"
