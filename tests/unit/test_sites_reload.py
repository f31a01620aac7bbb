"""Site files reloaded on change: a new device is usable without a restart, a bad edit is not."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.common.sites.registry import SiteRegistry
from services.common.sites.reload import RELOADS, SiteReloader
from services.common.watch import fingerprint
from tests.builders import add_east_detector, copy_site_files, replace_in


class Installed:
    def __init__(self) -> None:
        self.registries: list[SiteRegistry] = []

    def __call__(self, registry: SiteRegistry) -> None:
        self.registries.append(registry)


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    return copy_site_files(tmp_path / "sites")


def reloader_for(site_file: Path, installed: Installed, *, loaded: str | None = "now") -> SiteReloader:
    def files() -> list[Path]:
        return sorted(site_file.parent.glob("*.yaml"))

    current = fingerprint(files()) if loaded == "now" else loaded
    return SiteReloader(files, installed, interval=60, loaded=current)


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

    add_east_detector(site_file)

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
