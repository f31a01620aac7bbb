"""Site files: typed decoding, the semantic checks, the registry, and the shipped demo file."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import ConfigError
from services.common.sites import Device, LatLon, Measure, Site, SiteRegistry, SitesFile, Tenant, Zone

DEMO = Path(__file__).resolve().parents[2] / "sites" / "ulsan-demo.yaml"

# Line numbers in the tests below refer to this text; keep them in step when editing it.
SITE = """\
version: 1
tenants:
  - id: acme
    name: "Acme Refining"
sites:
  - id: acme-refinery
    tenant: acme
    name: "Acme Refinery"
    kind: plant
    timezone: Asia/Seoul
    location: {lat: 35.4768, lon: 129.3529}
    zones:
      - id: cdu-1
        name: "Crude Distillation Unit 1"
        hazard: flammable
        polygon: [[35.4771, 129.3502], [35.4779, 129.3515], [35.4770, 129.3520]]
    devices:
      - id: gd-cdu1-101
        zone: cdu-1
        type: gas_detector
        position: {lat: 35.4773, lon: 129.3510}
        measures:
          - kind: gas.h2s
            unit: ppm
            range: [0, 100]
          - kind: gas.lel
            unit: "%LEL"
"""


def write(tmp_path: Path, text: str, name: str = "site.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, *texts: str) -> ConfigError:
    paths = [write(tmp_path, text, f"site{i}.yaml") for i, text in enumerate(texts)]
    with pytest.raises(ConfigError) as info:
        SiteRegistry.load(paths)
    return info.value


def test_valid_file_loads(tmp_path: Path) -> None:
    registry = SiteRegistry.load([write(tmp_path, SITE)])
    site = registry.site("acme-refinery")
    assert site is not None
    assert site.location == LatLon(lat=35.4768, lon=129.3529)
    assert registry.measure("acme-refinery", "gd-cdu1-101", "gas.lel") == Measure(kind="gas.lel", unit="%LEL")


# --- what the types reject, with the path msgspec reports ---


def test_unknown_key_in_a_device(tmp_path: Path) -> None:
    text = SITE.replace("        zone: cdu-1\n", "        zone: cdu-1\n        unti: x\n")
    err = load_error(tmp_path, text)
    assert (err.file, err.line, err.key) == (str(tmp_path / "site0.yaml"), 20, "sites[0].devices[0].unti")


def test_bad_device_type(tmp_path: Path) -> None:
    err = load_error(tmp_path, SITE.replace("type: gas_detector", "type: smoke_detector"))
    assert (err.line, err.key) == (20, "sites[0].devices[0].type")
    assert err.message == "Invalid enum value 'smoke_detector'"


def test_bad_hazard(tmp_path: Path) -> None:
    err = load_error(tmp_path, SITE.replace("hazard: flammable", "hazard: explosive"))
    assert (err.line, err.key) == (15, "sites[0].zones[0].hazard")


def test_wrong_version(tmp_path: Path) -> None:
    err = load_error(tmp_path, SITE.replace("version: 1", "version: 2"))
    assert (err.line, err.key, err.message) == (1, "version", "Invalid enum value 2")


def test_latitude_out_of_range(tmp_path: Path) -> None:
    err = load_error(tmp_path, SITE.replace("lat: 35.4773", "lat: 95.4773"))
    assert (err.line, err.key) == (21, "sites[0].devices[0].position.lat")


def test_site_id_must_be_a_slug(tmp_path: Path) -> None:
    err = load_error(tmp_path, SITE.replace("  - id: acme-refinery", "  - id: Acme_Refinery"))
    assert (err.line, err.key) == (6, "sites[0].id")
    assert err.message.startswith("Expected `str` matching regex")


def test_measure_kind_pattern(tmp_path: Path) -> None:
    err = load_error(tmp_path, SITE.replace("kind: gas.h2s", "kind: Gas.H2S"))
    assert (err.line, err.key) == (23, "sites[0].devices[0].measures[0].kind")


def test_device_needs_a_measure(tmp_path: Path) -> None:
    head, _, _ = SITE.partition("        measures:\n")
    err = load_error(tmp_path, head + "        measures: []\n")
    assert (err.line, err.key) == (22, "sites[0].devices[0].measures")


def test_missing_site_field(tmp_path: Path) -> None:
    err = load_error(tmp_path, SITE.replace("    timezone: Asia/Seoul\n", ""))
    assert (err.line, err.key) == (6, "sites[0].timezone")


# --- semantic checks ---


def test_duplicate_tenant(tmp_path: Path) -> None:
    text = SITE.replace("sites:\n", '  - id: acme\n    name: "Acme again"\nsites:\n')
    err = load_error(tmp_path, text)
    assert (err.line, err.key) == (5, "tenants[1].id")
    assert err.message == "duplicate tenant id `acme` (first defined at line 3)"


def test_duplicate_site_in_one_file(tmp_path: Path) -> None:
    _, _, site = SITE.partition("sites:\n")
    err = load_error(tmp_path, SITE + site)
    assert (err.line, err.key) == (28, "sites[1].id")
    assert err.message == "duplicate site id `acme-refinery` (first defined at line 6)"


def test_duplicate_site_across_files_names_both(tmp_path: Path) -> None:
    _, _, site = SITE.partition("sites:\n")
    other = 'version: 1\ntenants:\n  - {id: other, name: "Other"}\nsites:\n' + site
    err = load_error(tmp_path, SITE, other)
    first, second = tmp_path / "site0.yaml", tmp_path / "site1.yaml"
    assert (err.file, err.line, err.key) == (str(second), 5, "sites[0].id")
    assert err.message == f"duplicate site id `acme-refinery` (first defined at {first}:6)"


def test_duplicate_tenant_across_files(tmp_path: Path) -> None:
    err = load_error(tmp_path, SITE, 'version: 1\ntenants:\n  - {id: acme, name: "Acme"}\n')
    assert (err.file, err.line, err.key) == (str(tmp_path / "site1.yaml"), 3, "tenants[0].id")
    assert f"{tmp_path / 'site0.yaml'}:3" in err.message


def test_unknown_tenant(tmp_path: Path) -> None:
    err = load_error(tmp_path, SITE.replace("tenant: acme", "tenant: acme-corp"))
    assert (err.line, err.key, err.message) == (7, "sites[0].tenant", "unknown tenant `acme-corp`")


def test_tenant_may_live_in_another_file(tmp_path: Path) -> None:
    tenants, _, site = SITE.partition("sites:\n")
    paths = [write(tmp_path, "version: 1\nsites:\n" + site, "a.yaml"), write(tmp_path, tenants, "b.yaml")]
    assert SiteRegistry.load(paths).tenant_of("acme-refinery") == "acme"


def test_bad_timezone(tmp_path: Path) -> None:
    err = load_error(tmp_path, SITE.replace("Asia/Seoul", "Asia/Ulsan"))
    assert (err.line, err.key) == (10, "sites[0].timezone")
    assert err.message.startswith("unknown time zone `Asia/Ulsan`")


def test_duplicate_zone(tmp_path: Path) -> None:
    zone = "      - {id: cdu-1, name: x, hazard: toxic, polygon: [[1, 1], [1, 2], [2, 2]]}\n"
    err = load_error(tmp_path, SITE.replace("    devices:\n", zone + "    devices:\n"))
    assert (err.line, err.key) == (17, "sites[0].zones[1].id")
    assert err.message == "duplicate zone id `cdu-1` (first defined at line 13)"


def test_polygon_needs_three_points(tmp_path: Path) -> None:
    err = load_error(tmp_path, SITE.replace(", [35.4770, 129.3520]]", "]"))
    assert (err.line, err.key) == (16, "sites[0].zones[0].polygon")
    assert err.message == "a polygon needs at least 3 points, got 2"


def test_duplicate_device(tmp_path: Path) -> None:
    device = "      - {id: gd-cdu1-101, zone: cdu-1, type: camera, position: {lat: 1, lon: 1}, " + (
        'measures: [{kind: flame, unit: "1"}]}\n'
    )
    err = load_error(tmp_path, SITE + device)
    assert (err.line, err.key) == (28, "sites[0].devices[1].id")
    assert err.message == "duplicate device id `gd-cdu1-101` (first defined at line 18)"


def test_device_in_unknown_zone(tmp_path: Path) -> None:
    err = load_error(tmp_path, SITE.replace("zone: cdu-1", "zone: cdu-9"))
    assert (err.line, err.key) == (19, "sites[0].devices[0].zone")
    assert err.message == "unknown zone `cdu-9` in site `acme-refinery`"


def test_duplicate_measure_kind(tmp_path: Path) -> None:
    err = load_error(tmp_path, SITE.replace("kind: gas.lel", "kind: gas.h2s"))
    assert (err.line, err.key) == (26, "sites[0].devices[0].measures[1].kind")
    assert err.message == "duplicate measure kind `gas.h2s` (first defined at line 23)"


@pytest.mark.parametrize("bad", ["[100, 0]", "[5, 5]"])
def test_range_min_below_max(tmp_path: Path, bad: str) -> None:
    err = load_error(tmp_path, SITE.replace("range: [0, 100]", f"range: {bad}"))
    assert (err.line, err.key) == (25, "sites[0].devices[0].measures[0].range")
    assert err.message.startswith("range min must be below max")


def test_checks_without_a_line_map_report_no_line() -> None:
    site = Site(
        id="s",
        tenant="t",
        name="S",
        kind="park",
        timezone="UTC",
        location=LatLon(lat=0, lon=0),
        zones=(Zone(id="z", name="Z", hazard="general", polygon=((0, 0), (0, 1))),),
    )
    doc = SitesFile(version=1, tenants=(Tenant(id="t", name="T"),), sites=(site,))
    with pytest.raises(ConfigError) as info:
        SiteRegistry.from_files([("code", doc, None)])
    assert str(info.value) == "code: sites[0].zones[0].polygon: a polygon needs at least 3 points, got 2"


# --- the registry ---


def test_registry_lookups(tmp_path: Path) -> None:
    registry = SiteRegistry.load([write(tmp_path, SITE)])
    assert [t.id for t in registry.tenants] == ["acme"]
    assert [s.id for s in registry.sites] == ["acme-refinery"]
    assert registry.tenant_of("acme-refinery") == "acme"
    assert [s.id for s in registry.sites_of("acme")] == ["acme-refinery"]
    zone = registry.zone("acme-refinery", "cdu-1")
    assert zone is not None
    assert zone.hazard == "flammable"
    device = registry.device("acme-refinery", "gd-cdu1-101")
    assert isinstance(device, Device)
    assert device.description is None
    assert registry.measure("acme-refinery", "gd-cdu1-101", "gas.h2s") == Measure(
        kind="gas.h2s", unit="ppm", range=(0.0, 100.0)
    )


def test_registry_unknowns_are_none(tmp_path: Path) -> None:
    registry = SiteRegistry.load([write(tmp_path, SITE)])
    assert registry.site("nope") is None
    assert registry.tenant_of("nope") is None
    assert registry.sites_of("nope") == []
    assert registry.zone("acme-refinery", "nope") is None
    assert registry.device("acme-refinery", "nope") is None
    assert registry.device("nope", "gd-cdu1-101") is None
    assert registry.measure("acme-refinery", "gd-cdu1-101", "gas.co") is None


def test_sites_of_returns_a_copy(tmp_path: Path) -> None:
    registry = SiteRegistry.load([write(tmp_path, SITE)])
    registry.sites_of("acme").clear()
    assert len(registry.sites_of("acme")) == 1


def test_empty_registry() -> None:
    registry = SiteRegistry.load([])
    assert registry.sites == ()
    assert registry.tenants == ()


# --- the shipped demo ---


def inside(point: LatLon, polygon: tuple[tuple[float, float], ...]) -> bool:
    """Ray casting; good enough for the small convex outlines of the demo."""
    result = False
    for (lat1, lon1), (lat2, lon2) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        if (lat1 > point.lat) != (lat2 > point.lat):
            lon_at = lon1 + (point.lat - lat1) * (lon2 - lon1) / (lat2 - lat1)
            if point.lon < lon_at:
                result = not result
    return result


def test_demo_file_loads_with_two_plants() -> None:
    registry = SiteRegistry.load([DEMO])
    plants = [site for site in registry.sites if site.kind == "plant"]
    assert {site.id for site in plants} == {"ulsan-refinery", "mipo-aromatics"}
    assert {site.tenant for site in plants} == {"ulsan-refining", "mipo-petrochem"}
    assert all(len(site.devices) >= 25 for site in plants)
    assert "ulsan-city" in {tenant.id for tenant in registry.tenants}
    assert registry.measure("ulsan-refinery", "gd-cdu1-101", "gas.h2s") == Measure(
        kind="gas.h2s", unit="ppm", range=(0.0, 100.0)
    )


def test_demo_devices_sit_inside_their_zones_in_ulsan() -> None:
    for site in SiteRegistry.load([DEMO]).sites:
        zones = {zone.id: zone for zone in site.zones}
        for zone in site.zones:
            assert all(35.46 <= lat <= 35.49 and 129.33 <= lon <= 129.38 for lat, lon in zone.polygon)
            assert 4 <= len(zone.polygon) <= 6
        for device in site.devices:
            assert inside(device.position, zones[device.zone].polygon), (site.id, device.id)
