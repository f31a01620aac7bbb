"""The hub's configuration: defaults, environment overrides, strict file errors, site file globs."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import ConfigError
from services.common.settings import site_files
from services.hub.registry import REGISTRY

HubConfig = REGISTRY.config_type()
load_config = REGISTRY.load_config


def write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    return str(info.value)


def test_without_a_file_every_setting_has_its_default() -> None:
    config, _ = load_config(None, env={})

    assert config == HubConfig()
    assert config.http.port == 8080
    assert config.bus.url is None
    assert config.database.url is None
    assert config.sites == ["sites/*.yaml"]


def test_a_file_sets_what_it_names_and_keeps_the_other_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "hub.yaml", "http:\n  port: 9090\nstore:\n  batch_max: 100\n")

    config, base = load_config(path, env={})

    assert config.http.port == 9090
    assert config.store.batch_max == 100
    assert config.http.host == HubConfig().http.host
    assert config.ingest == HubConfig().ingest
    assert base == tmp_path.resolve()


def test_the_environment_names_the_servers() -> None:
    env = {"SAFETYHUB_NATS_URL": "nats://bus:4222", "SAFETYHUB_DATABASE_URL": "postgresql://db/safetyhub"}

    config, _ = load_config(None, env=env)

    assert config.bus.url == "nats://bus:4222"
    assert config.database.url == "postgresql://db/safetyhub"


def test_the_environment_wins_over_the_file_and_the_file_applies_without_it(tmp_path: Path) -> None:
    path = write(
        tmp_path / "hub.yaml",
        "bus:\n  url: nats://file:4222\ndatabase:\n  url: postgresql://file/db\n",
    )

    from_env, _ = load_config(path, env={"SAFETYHUB_NATS_URL": "nats://env:4222"})
    from_file, _ = load_config(path, env={})

    assert from_env.bus.url == "nats://env:4222"
    assert from_env.database.url == "postgresql://file/db"
    assert (from_file.bus.url, from_file.database.url) == ("nats://file:4222", "postgresql://file/db")


def test_an_unknown_key_names_file_line_and_key_path(tmp_path: Path) -> None:
    path = write(tmp_path / "hub.yaml", "http:\n  port: 8080\nstore:\n  batch_max: 10\n  batch_mx: 5\n")

    message = config_error(path)

    assert f"{path}:5" in message
    assert "store.batch_mx" in message


def test_a_wrong_type_names_file_line_and_key_path(tmp_path: Path) -> None:
    path = write(tmp_path / "hub.yaml", "log_level: info\ningest:\n  max_items: lots\n")

    message = config_error(path)

    assert f"{path}:3" in message
    assert "ingest.max_items" in message


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("http:\n  port: 70000\n", 2, "http.port"),
        ("store:\n  batch_max: 0\n", 2, "store.batch_max"),
        ("log_level: verbose\n", 1, "log_level"),
        ("bus:\n  observations:\n    storage: tape\n", 3, "bus.observations.storage"),
    ],
)
def test_a_value_out_of_range_names_file_line_and_key_path(
    tmp_path: Path, text: str, line: int, key: str
) -> None:
    path = write(tmp_path / "hub.yaml", text)

    message = config_error(path)

    assert f"{path}:{line}" in message
    assert key in message


def test_a_missing_config_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"

    assert str(path) in config_error(path)


def test_site_globs_are_relative_to_the_config_file_not_the_working_directory(tmp_path: Path) -> None:
    conf = tmp_path / "etc" / "safetyhub"
    path = write(conf / "hub.yaml", "sites:\n  - sites/*.yaml\n  - extra/one.yaml\n")
    b = write(conf / "sites" / "b.yaml")
    a = write(conf / "sites" / "a.yaml")
    write(conf / "sites" / "notes.txt")
    (conf / "sites" / "old.yaml").mkdir()  # a directory that matches the glob is not a site file

    config, base = load_config(path, env={})

    assert site_files(config, base) == [a.resolve(), b.resolve(), (conf / "extra" / "one.yaml").resolve()]


def test_an_absolute_site_glob_is_used_as_it_is(tmp_path: Path) -> None:
    site = write(tmp_path / "shared" / "plant.yaml")
    path = write(tmp_path / "conf" / "hub.yaml", f"sites:\n  - {tmp_path / 'shared'}/*.yaml\n")

    config, base = load_config(path, env={})

    assert site_files(config, base) == [site]


def test_a_glob_that_matches_nothing_gives_no_files(tmp_path: Path) -> None:
    path = write(tmp_path / "hub.yaml", "sites:\n  - sites/*.yaml\n")

    config, base = load_config(path, env={})

    assert site_files(config, base) == []
