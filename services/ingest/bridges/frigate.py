"""Frigate NVR events (`<prefix>/events`) read by the MQTT bridge. Pure: the registry is a
parameter.

Each message is decoded and mapped by the video service's Frigate mapping
(`services/video/adapters/frigate.py`: a watched object newly in a watched zone is one detection,
its id derived from the Frigate event and the zone, so every `update` and a redelivery name the
same observation). What comes out is checked as the video service checks its own cameras (the
device is a camera of the site, the zone one of the site's) and published as a camera detection
is: no measure of the registry is asked, a camera's detections are not registered measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.common.sites.registry import SiteRegistry
from services.ingest.bridges.frigate_config import FrigateConfig
from services.ingest.bridges.mqtt_mapping import Unmapped, resolve_tenant
from services.ingest.domain.checks import ItemError
from services.ingest.domain.contract import ObservationIn
from services.ingest.intake import Checked, Limits
from services.video.adapters.frigate import FrigateCamera, FrigateEventError, decode, observations


@dataclass(frozen=True, slots=True)
class FrigateRead:
    """What one event became: the tenant's checked detections (often none: most updates)."""

    tenant: str
    checked: Checked
    count: int


class FrigateReader:
    def __init__(self, config: FrigateConfig) -> None:
        self._topic = config.topic
        self._cameras = {
            camera.name: FrigateCamera(
                site=camera.site,
                device=camera.device,
                detect_width=camera.detect.width,
                detect_height=camera.detect.height,
                restricted_zones=frozenset(camera.zones),
                labels=frozenset(camera.labels),
                frigate_url=config.url,
                site_zones=dict(camera.zones),
                kinds=dict(camera.labels),
            )
            for camera in config.cameras
        }

    @property
    def subscriptions(self) -> list[str]:
        return [self._topic]

    def accepts(self, topic: str) -> bool:
        return topic == self._topic

    def read(self, payload: bytes, registry: SiteRegistry, now: datetime, limits: Limits) -> FrigateRead:
        """The detections of one event; raises Unmapped when the message is not a Frigate event
        or names a camera or zone the site files do not have."""
        try:
            found = observations(decode(payload), self._cameras)
        except FrigateEventError as err:
            raise Unmapped("malformed", str(err)) from err
        tenant = resolve_tenant(found, None, registry)
        checked = Checked()
        for index, item in enumerate(found):
            problem = _not_allowed(item, registry, now, limits)
            if problem is None:
                checked.valid.append(item)
                checked.positions.append(index)
            else:
                checked.errors.append(problem.at(index))
        return FrigateRead(tenant, checked, len(found))


@dataclass(frozen=True, slots=True)
class _Problem:
    field: str
    detail: str

    def at(self, index: int) -> ItemError:
        return ItemError(index, self.field, self.detail)


def _not_allowed(
    item: ObservationIn, registry: SiteRegistry, now: datetime, limits: Limits
) -> _Problem | None:
    device = registry.device(item.site, item.device)
    if device is None:
        return _Problem("device", f"device '{item.device}' is not registered at site '{item.site}'")
    if device.type != "camera":
        return _Problem("device", f"device '{item.device}' is a {device.type}, not a camera")
    zone = item.attributes.get("zone", "")
    if registry.zone(item.site, zone) is None:
        return _Problem("zone", f"zone '{zone}' is not a zone of site '{item.site}'")
    # The same bounds as a posted observation's time (see ingest.domain.checks).
    when = item.time or now
    if when - now > limits.max_future:
        return _Problem("time", f"time is more than {int(limits.max_future.total_seconds())} s in the future")
    if limits.max_age is not None and now - when > limits.max_age:
        return _Problem("time", f"time is more than {limits.max_age.days} days in the past")
    return None
