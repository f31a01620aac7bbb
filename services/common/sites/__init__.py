"""Sites: the tenants, plants, zones and devices the hub knows, loaded from `sites/*.yaml`."""

from __future__ import annotations

from services.common.sites.model import (
    Device,
    DeviceType,
    Hazard,
    LatLon,
    Measure,
    Site,
    SiteKind,
    SitesFile,
    Tenant,
    Zone,
)
from services.common.sites.registry import SiteRegistry

__all__ = [
    "Device",
    "DeviceType",
    "Hazard",
    "LatLon",
    "Measure",
    "Site",
    "SiteKind",
    "SiteRegistry",
    "SitesFile",
    "Tenant",
    "Zone",
]
