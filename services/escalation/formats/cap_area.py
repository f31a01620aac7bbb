"""Where a CAP alert applies: the incident's zones as polygons, else a circle around its position.

CAP 1.2 (section 3.2.4) writes WGS 84 points as "lat,lon" separated by spaces; a polygon is a
closed ring of at least four points whose last equals its first; a circle is "lat,lon radius"
with the radius in kilometres. The site registry's zone outlines are open rings (the registry's
files say the ring closes itself), so the ring is closed here.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.contracts import Incident
from services.common.sites.model import Site, Zone

# The smallest polygon CAP accepts: a triangle, closed.
_MIN_RING = 3


@dataclass(frozen=True, slots=True)
class Area:
    """The parts of one CAP <area> (the description is the caller's, in the alert's language)."""

    polygons: tuple[str, ...] = ()
    circles: tuple[str, ...] = ()


def coordinate(value: float) -> str:
    """Decimal degrees (or kilometres) to six places (about 0.1 m), without trailing zeros.

    Never in exponent form (`1e-07`), which CAP readers do not parse.
    """
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def point(lat: float, lon: float) -> str:
    return f"{coordinate(lat)},{coordinate(lon)}"


def polygon(zone: Zone) -> str | None:
    """The zone's outline as a closed CAP ring; None when it has fewer than three distinct points."""
    ring = [point(lat, lon) for lat, lon in zone.polygon]
    while len(ring) > 1 and ring[-1] == ring[0]:
        ring.pop()  # closed already (or repeated): close it once below
    if len(set(ring)) < _MIN_RING:
        return None
    return " ".join([*ring, ring[0]])


def position(incident: Incident, site: Site) -> tuple[float, float] | None:
    """Where the incident began: its own position, else the first member device the registry places."""
    if incident.HasField("latitude") and incident.HasField("longitude"):
        return incident.latitude, incident.longitude
    devices = {device.id: device for device in site.devices}
    for member in incident.members:
        device = devices.get(member.device)
        if device is not None:
            return device.position.lat, device.position.lon
    return None


def area(incident: Incident, site: Site, *, radius_km: float) -> Area:
    """Polygons of the incident's zones the registry outlines; else a circle of `radius_km` around
    its position; else nothing (the caller's areaDesc alone, which CAP allows).

    A circle is not added beside zone polygons: the zones are where the hazard is managed, and a
    circle around one device would only repeat a part of them less precisely.
    """
    zones = {zone.id: zone for zone in site.zones}
    rings = [polygon(zones[name]) for name in dict.fromkeys(incident.zones) if name in zones]
    polygons = tuple(ring for ring in rings if ring is not None)
    if polygons:
        return Area(polygons=polygons)
    where = position(incident, site)
    if where is None or not _on_earth(*where):
        return Area()
    return Area(circles=(f"{point(*where)} {coordinate(radius_km)}",))


def _on_earth(lat: float, lon: float) -> bool:
    # A position the contract carries but no device could have had (NaN, out of range) is left
    # out rather than sent as a place that does not exist.
    return -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0
