"""The site model: tenants, their sites, zones and devices, and what each device measures.

Plain frozen Structs decoded from `sites/*.yaml`. Everything a type can say is said here (enums,
id patterns, coordinate ranges) so msgspec rejects it with a path; rules that relate values to
each other (unique ids, references, min < max) live in `validate.py`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.common.types import DeviceId, Kind, Slug

Name = Annotated[str, Meta(min_length=1)]
Latitude = Annotated[float, Meta(ge=-90, le=90)]
Longitude = Annotated[float, Meta(ge=-180, le=180)]

SiteKind = Literal["plant", "park", "city"]
Hazard = Literal["flammable", "toxic", "flammable_toxic", "asphyxiant", "general"]
DeviceType = Literal[
    "gas_detector",
    "flame_detector",
    "heat_detector",
    "temperature",
    "pressure",
    "vibration",
    "camera",
    "gateway",
]


class LatLon(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A WGS 84 position in decimal degrees."""

    lat: Latitude
    lon: Longitude


class Measure(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One quantity a device reports, with its unit and, if known, its calibrated range."""

    kind: Kind
    unit: Name
    range: tuple[float, float] | None = None


class Device(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A field device placed in one zone of its site."""

    id: DeviceId
    zone: Slug
    type: DeviceType
    position: LatLon
    measures: Annotated[tuple[Measure, ...], Meta(min_length=1)]
    description: str | None = None


class Zone(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """An area of a site with one hazard class, outlined by [lat, lon] points."""

    id: Slug
    name: Name
    hazard: Hazard
    polygon: tuple[tuple[Latitude, Longitude], ...]


class Site(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A plant, park or city area owned by one tenant."""

    id: Slug
    tenant: Slug
    name: Name
    kind: SiteKind
    timezone: Name
    location: LatLon
    zones: tuple[Zone, ...] = ()
    devices: tuple[Device, ...] = ()


class Tenant(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """An organisation that owns sites; the unit of data isolation."""

    id: Slug
    name: Name


class SitesFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One `sites/*.yaml` file. Several files merge into one registry."""

    version: Literal[1]
    tenants: tuple[Tenant, ...] = ()
    sites: tuple[Site, ...] = ()
