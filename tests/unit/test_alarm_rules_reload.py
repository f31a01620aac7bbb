"""The alarm rules in use: validated at start-up, reloaded on a change of their files or of the
site registry, and a refused reload keeps the last valid rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.alarms import metrics
from services.alarms.rules_reload import Rules, rule_patterns
from services.common.errors import ConfigError
from services.common.sites.registry import SiteRegistry
from tests.builders import replace_in
from tests.conftest import DEMO_SITES, EXTRA_SITE, REPO

DEMO_RULES = REPO / "sites" / "alarms" / "ulsan-demo.yaml"


@pytest.fixture
def registry() -> SiteRegistry:
    return SiteRegistry.load([DEMO_SITES, EXTRA_SITE])


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "alarms" / "plant.yaml"
    path.parent.mkdir()
    path.write_text(DEMO_RULES.read_text(encoding="utf-8"), encoding="utf-8")
    return path


def _failed() -> float:
    return metrics.RULES_RELOADS.labels("failed")._value.get()


def test_by_default_the_rules_are_beside_the_site_files(tmp_path: Path) -> None:
    patterns = rule_patterns(None, ["sites/*.yaml", "/etc/plant/sites/a.yaml"], tmp_path)
    assert patterns == [Path("/etc/plant/sites/alarms/*.yaml"), tmp_path / "sites" / "alarms" / "*.yaml"]
    assert rule_patterns(["r/*.yaml"], ["sites/*.yaml"], tmp_path) == [tmp_path / "r" / "*.yaml"]


def test_an_invalid_rule_file_stops_start_up_naming_file_line_and_key(
    rules_file: Path, registry: SiteRegistry
) -> None:
    text = rules_file.read_text(encoding="utf-8")
    rules_file.write_text(text.replace("    setpoint: 40\n", "    setpoint: 40\n    setpiont: 41\n", 1))
    rules = Rules([rules_file], lambda: registry)
    with pytest.raises(ConfigError) as refused:
        rules.load()
    assert refused.value.file == str(rules_file)
    assert refused.value.line is not None and "setpiont" in str(refused.value)
    assert not rules.ready


def test_explicit_paths_matching_nothing_stop_start_up_and_the_default_runs_without_rules(
    tmp_path: Path, registry: SiteRegistry
) -> None:
    with pytest.raises(ConfigError, match="no alarm rule file"):
        Rules([tmp_path / "none" / "*.yaml"], lambda: registry).load()
    default = Rules([tmp_path / "none" / "*.yaml"], lambda: registry, explicit=False)
    default.load()
    assert default.ready and len(default.rules().rules) == 0


async def test_a_refused_reload_keeps_the_last_valid_rules_and_a_fixed_file_is_taken(
    rules_file: Path, registry: SiteRegistry
) -> None:
    rules = Rules([rules_file], lambda: registry)
    rules.load()
    loaded, engine = rules.rules(), rules.engine()
    assert await rules.check() is False  # nothing changed

    replace_in(rules_file, "    setpoint: 40\n", "    setpoint: 5\n")  # the high-high below its high
    failed = _failed()
    assert await rules.check() is False
    assert rules.rules() is loaded and rules.engine() is engine
    assert _failed() == failed + 1

    replace_in(rules_file, "    setpoint: 5\n", "    setpoint: 45\n")
    assert await rules.check() is True
    assert rules.rules() is not loaded
    assert rules.rules().index.rule("lel-high-high").setpoint == 45  # type: ignore[union-attr]


async def test_rules_are_checked_again_when_the_site_registry_reloads(
    rules_file: Path, registry: SiteRegistry, tmp_path: Path
) -> None:
    current = [registry]
    rules = Rules([rules_file], lambda: current[0])
    rules.load()
    loaded = rules.rules()

    # A site edit removes a detector a voting group names: the rules no longer hold.
    demo = DEMO_SITES.read_text(encoding="utf-8")
    without = re.sub(r"\n      - id: gd-fcc2-201\n(        .*\n|          .*\n)+", "\n", demo, count=1)
    assert without != demo
    edited = tmp_path / "demo.yaml"
    edited.write_text(without, encoding="utf-8")
    current[0] = SiteRegistry.load([edited, EXTRA_SITE])
    assert current[0].device("ulsan-refinery", "gd-fcc2-201") is None

    failed = _failed()
    assert await rules.check() is False
    assert rules.rules() is loaded and _failed() == failed + 1

    # The registry as it was (an equal one, reloaded): the rules validate and are in use again.
    current[0] = SiteRegistry.load([DEMO_SITES, EXTRA_SITE])
    assert await rules.check() is True
    assert rules.engine().device_points("ulsan-refining", "ulsan-refinery", "gd-fcc2-201")
