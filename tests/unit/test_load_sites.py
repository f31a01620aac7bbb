"""Start-up's site load: no site file (or no site in them) stops it, unless `sites: []` says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import ConfigError
from services.hub.bootstrap import load_sites
from services.hub.registry import REGISTRY
from tests.conftest import DEMO_SITES

HubConfig = REGISTRY.config_type()
load_config = REGISTRY.load_config


def _config(folder: Path, text: str) -> tuple[HubConfig, Path]:
    path = folder / "hub.yaml"
    path.write_text(text)
    return load_config(path, env={})


async def test_no_matching_site_file_stops_start_up_naming_the_absolute_paths(tmp_path: Path) -> None:
    config, base = _config(tmp_path, "sites: ['sites/*.yaml', 'plants/*.yaml']\n")
    (tmp_path / "sites").mkdir()  # exists, but holds no site file

    with pytest.raises(ConfigError) as info:
        await load_sites(config, base)

    message = str(info.value)
    assert str(tmp_path / "sites" / "*.yaml") in message
    assert str(tmp_path / "plants" / "*.yaml") in message
    assert "--config" in message


async def test_the_default_pattern_is_named_from_the_working_directory(tmp_path: Path) -> None:
    # No --config: `sites/*.yaml` of wherever the hub was started.
    with pytest.raises(ConfigError, match="no site file found") as info:
        await load_sites(HubConfig(), tmp_path)

    assert str(tmp_path / "sites" / "*.yaml") in str(info.value)


async def test_site_files_that_declare_no_site_stop_start_up(tmp_path: Path) -> None:
    (tmp_path / "sites").mkdir()
    empty = tmp_path / "sites" / "tenants.yaml"
    empty.write_text("version: 1\ntenants:\n  - {id: acme, name: Acme}\n")
    config, base = _config(tmp_path, "sites: ['sites/*.yaml']\n")

    with pytest.raises(ConfigError, match="declare no site") as info:
        await load_sites(config, base)

    assert str(empty) in str(info.value)


async def test_an_explicit_empty_list_runs_with_no_sites(tmp_path: Path) -> None:
    config, base = _config(tmp_path, "sites: []\n")

    loaded = await load_sites(config, base)

    assert list(loaded.registry.sites) == []


async def test_site_files_that_are_found_load(tmp_path: Path) -> None:
    config, base = _config(tmp_path, f"sites: ['{DEMO_SITES}']\n")

    loaded = await load_sites(config, base)

    assert loaded.registry.site("ulsan-refinery") is not None
