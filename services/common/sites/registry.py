"""All known sites, merged from the site files and indexed for the ingest hot path."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from services.common.config.yaml_loader import load_yaml_file_with_lines
from services.common.sites.model import Device, Measure, Site, SitesFile, Tenant, Zone
from services.common.sites.validate import LoadedFile, validate_files


class SiteRegistry:
    """Immutable, validated view of every tenant, site, zone, device and measure.

    Ingest asks `measure()` and `tenant_of()` for every observation (tens of thousands a second),
    so every lookup is one dict probe into an index built once here.
    """

    __slots__ = (
        "_devices",
        "_measures",
        "_sites",
        "_sites_by_id",
        "_sites_of",
        "_tenant_of",
        "_tenants",
        "_zones",
    )
    _sites: tuple[Site, ...]
    _tenants: tuple[Tenant, ...]
    _sites_by_id: dict[str, Site]
    _tenant_of: dict[str, str]
    _sites_of: dict[str, tuple[Site, ...]]
    _zones: dict[tuple[str, str], Zone]
    _devices: dict[tuple[str, str], Device]
    _measures: dict[tuple[str, str, str], Measure]

    def __init__(self, tenants: Sequence[Tenant], sites: Sequence[Site]) -> None:
        """Indexes already validated data; use `load` or `from_files`, which validate first."""
        self._tenants = tuple(tenants)
        self._sites = tuple(sites)
        self._sites_by_id = {site.id: site for site in self._sites}
        self._tenant_of = {site.id: site.tenant for site in self._sites}
        by_tenant: dict[str, list[Site]] = {}
        for site in self._sites:
            by_tenant.setdefault(site.tenant, []).append(site)
        self._sites_of = {tenant: tuple(owned) for tenant, owned in by_tenant.items()}
        self._zones = {(site.id, zone.id): zone for site in self._sites for zone in site.zones}
        self._devices = {(site.id, dev.id): dev for site in self._sites for dev in site.devices}
        self._measures = {
            (site.id, dev.id, measure.kind): measure
            for site in self._sites
            for dev in site.devices
            for measure in dev.measures
        }

    @classmethod
    def load(cls, paths: Sequence[Path]) -> SiteRegistry:
        """Reads, validates and merges site files (blocking: start-up or a worker thread)."""
        files: list[LoadedFile] = []
        for path in paths:
            doc, lines = load_yaml_file_with_lines(path, SitesFile)
            files.append((str(path), doc, lines))
        return cls.from_files(files)

    @classmethod
    def from_files(cls, files: Sequence[LoadedFile]) -> SiteRegistry:
        """Validates already parsed files as one set and merges them; raises ConfigError."""
        validate_files(files)
        tenants = [tenant for _, doc, _ in files for tenant in doc.tenants]
        sites = [site for _, doc, _ in files for site in doc.sites]
        return cls(tenants, sites)

    @property
    def sites(self) -> Sequence[Site]:
        return self._sites

    @property
    def tenants(self) -> Sequence[Tenant]:
        return self._tenants

    def site(self, site_id: str) -> Site | None:
        return self._sites_by_id.get(site_id)

    def zone(self, site_id: str, zone_id: str) -> Zone | None:
        return self._zones.get((site_id, zone_id))

    def device(self, site_id: str, device_id: str) -> Device | None:
        return self._devices.get((site_id, device_id))

    def measure(self, site_id: str, device_id: str, kind: str) -> Measure | None:
        return self._measures.get((site_id, device_id, kind))

    def tenant_of(self, site_id: str) -> str | None:
        return self._tenant_of.get(site_id)

    def sites_of(self, tenant: str) -> list[Site]:
        """A tenant's sites in file order (a new list: the registry itself stays unchanged)."""
        return list(self._sites_of.get(tenant, ()))
