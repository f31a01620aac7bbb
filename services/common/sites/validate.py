"""Checks on site files that types cannot express: unique ids, references, ranges, time zones.

Each failure is a ConfigError naming the file, the line (when a LineMap is known) and the key
path, like the loader's own errors. Tenant and site ids are unique across all files loaded
together, so a duplicate names both files.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence

from services.common.config.source import SourceFile
from services.common.config.yaml_loader import LineMap
from services.common.sites.model import Device, Site, SitesFile, Zone
from services.common.validation import PathPart

# (filename, parsed file, its line map if it came from YAML)
LoadedFile = tuple[str, SitesFile, LineMap | None]

MIN_POLYGON_POINTS = 3


class _FirstSeen:
    """Remembers where each id was first defined, to report duplicates with both places."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._seen: dict[str, tuple[SourceFile, int | None]] = {}

    def add(self, id_: str, source: SourceFile, path: Sequence[PathPart]) -> None:
        line = source.line(path)
        first = self._seen.get(id_)
        if first is None:
            self._seen[id_] = (source, line)
            return
        first_source, first_line = first
        if first_source.filename == source.filename:
            where = f"line {first_line}" if first_line is not None else "earlier in this file"
        else:
            where = first_source.filename + (f":{first_line}" if first_line is not None else "")
        raise source.error(path, f"duplicate {self._what} `{id_}` (first defined at {where})")

    def __contains__(self, id_: str) -> bool:
        return id_ in self._seen


def validate_files(files: Sequence[LoadedFile]) -> None:
    """Raises the first ConfigError found across `files`, checked as one merged registry."""
    sources = [(SourceFile(name, lines), doc) for name, doc, lines in files]
    # Ids first, across all files, so references below may point into any file.
    tenants = _FirstSeen("tenant id")
    sites = _FirstSeen("site id")
    for source, doc in sources:
        for i, tenant in enumerate(doc.tenants):
            tenants.add(tenant.id, source, ("tenants", i, "id"))
    for source, doc in sources:
        for i, site in enumerate(doc.sites):
            sites.add(site.id, source, ("sites", i, "id"))
    for source, doc in sources:
        for i, site in enumerate(doc.sites):
            if site.tenant not in tenants:
                raise source.error(("sites", i, "tenant"), f"unknown tenant `{site.tenant}`")
            _check_site(site, source, ("sites", i))


def _check_site(site: Site, source: SourceFile, path: tuple[PathPart, ...]) -> None:
    if not _is_timezone(site.timezone):
        raise source.error(
            (*path, "timezone"), f"unknown time zone `{site.timezone}` (expected e.g. `Asia/Seoul`)"
        )
    zones = _FirstSeen("zone id")
    for j, zone in enumerate(site.zones):
        zones.add(zone.id, source, (*path, "zones", j, "id"))
        _check_zone(zone, source, (*path, "zones", j))
    devices = _FirstSeen("device id")
    for k, device in enumerate(site.devices):
        devices.add(device.id, source, (*path, "devices", k, "id"))
        if device.zone not in zones:
            raise source.error(
                (*path, "devices", k, "zone"), f"unknown zone `{device.zone}` in site `{site.id}`"
            )
        _check_device(device, source, (*path, "devices", k))


def _check_zone(zone: Zone, source: SourceFile, path: tuple[PathPart, ...]) -> None:
    if len(zone.polygon) < MIN_POLYGON_POINTS:
        raise source.error(
            (*path, "polygon"),
            f"a polygon needs at least {MIN_POLYGON_POINTS} points, got {len(zone.polygon)}",
        )


def _check_device(device: Device, source: SourceFile, path: tuple[PathPart, ...]) -> None:
    kinds = _FirstSeen("measure kind")
    for m, measure in enumerate(device.measures):
        kinds.add(measure.kind, source, (*path, "measures", m, "kind"))
        if measure.range is not None:
            low, high = measure.range
            if not low < high:
                raise source.error(
                    (*path, "measures", m, "range"), f"range min must be below max, got [{low}, {high}]"
                )


def _is_timezone(key: str) -> bool:
    try:
        zoneinfo.ZoneInfo(key)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: not a normalized relative key ("../x", "/etc/localtime") or not a TZif file.
        return False
    return True
