"""Site files reloaded on change: a new device is usable without a restart, a bad edit is not."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from services.common.sites.registry import SiteRegistry
from services.common.sites.reload import RELOADS, SiteReloader, fingerprint
from tests.conftest import DEMO_SITES, EXTRA_SITE

NEW_DEVICE = """
      - id: gd-hcr1-102
        zone: hcr-1
        type: gas_detector
        position: {lat: 35.4701, lon: 129.3701}
        measures:
          - {kind: gas.h2s, unit: ppm, range: [0, 100]}
"""


class Installed:
    def __init__(self) -> None:
        self.registries: list[SiteRegistry] = []

    def __call__(self, registry: SiteRegistry) -> None:
        self.registries.append(registry)


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    """The east site's file, beside the demo file that declares its tenant."""
    path = tmp_path / "sites" / "east.yaml"
    path.parent.mkdir()
    shutil.copy(DEMO_SITES, path.parent / "demo.yaml")
    shutil.copy(EXTRA_SITE, path)
    return path


def reloader_for(site_file: Path, installed: Installed, *, loaded: str | None = "now") -> SiteReloader:
    def files() -> list[Path]:
        return sorted(site_file.parent.glob("*.yaml"))

    current = fingerprint(files()) if loaded == "now" else loaded
    return SiteReloader(files, installed, interval=60, loaded=current)


def replace_in(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


def copy_renamed(path: Path, to: Path, old: str, new: str) -> None:
    to.write_text(path.read_text().replace(old, new))


def remove_all(folder: Path) -> None:
    for path in folder.glob("*.yaml"):
        path.unlink()


def failures() -> float:
    return RELOADS.labels("failed")._value.get()


async def test_nothing_changed_loads_nothing(site_file: Path) -> None:
    installed = Installed()

    assert await reloader_for(site_file, installed).check() is False
    assert installed.registries == []


async def test_an_added_device_is_in_the_new_registry(site_file: Path) -> None:
    installed = Installed()
    reloader = reloader_for(site_file, installed)

    replace_in(site_file, "devices:\n", "devices:" + NEW_DEVICE)

    assert await reloader.check() is True
    (registry,) = installed.registries
    assert registry.device("ulsan-refinery-east", "gd-hcr1-102") is not None
    assert await reloader.check() is False  # loaded once


async def test_a_new_file_matching_the_glob_is_loaded(site_file: Path) -> None:
    installed = Installed()
    reloader = reloader_for(site_file, installed)
    copy_renamed(site_file, site_file.parent / "onsan.yaml", "ulsan-refinery-east", "onsan-terminal")

    assert await reloader.check() is True
    assert installed.registries[0].site("onsan-terminal") is not None


async def test_an_invalid_edit_keeps_the_last_registry_and_is_reported_once(
    site_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    installed = Installed()
    reloader = reloader_for(site_file, installed)
    before = failures()

    replace_in(site_file, "kind: gas.h2s, unit: ppm", "kind: gas.h2s, unitt: ppm")

    assert await reloader.check() is False
    assert installed.registries == []
    assert failures() == before + 1
    logged = capsys.readouterr().out
    assert "sites_reload_failed" in logged and "east.yaml" in logged and "unitt" in logged
    assert await reloader.check() is False
    assert failures() == before + 1  # the same bad file is not reported every tick

    replace_in(site_file, "unitt", "unit")
    assert await reloader.check() is True


async def test_no_matching_file_keeps_the_last_registry(site_file: Path) -> None:
    installed = Installed()
    reloader = reloader_for(site_file, installed)
    before = failures()

    await asyncio.to_thread(remove_all, site_file.parent)

    assert await reloader.check() is False
    assert installed.registries == []
    assert failures() == before + 1


async def test_an_unknown_starting_point_loads_at_the_first_check(site_file: Path) -> None:
    installed = Installed()

    assert await reloader_for(site_file, installed, loaded=None).check() is True
    assert len(installed.registries) == 1
