"""The `incidents:` config section: fusion rules declared in the hub's config, refused at start-up
with file, line and key when wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import ConfigError
from services.hub.registry import REGISTRY
from services.incidents.app import INCIDENTS
from services.incidents.domain.model import IncidentType
from services.incidents.domain.rules import DEFAULT_RULES

GOOD = """\
incidents:
  fusion_rules:
    - type: gas_release
      kinds: ["gas.*", video.vapour]
      opens_on: ["gas.*"]
      window_s: 300
      radius_m: 80
      resolve_on: all
      confirm_by: [["gas.*"], [video.vapour]]
      actions: [{ko: 바람 방향 확인, en: Check the wind}]
"""


def test_declared_fusion_rules_replace_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(GOOD, encoding="utf-8")
    config, _ = REGISTRY.load_config(path, env={})
    [rule] = INCIDENTS.section(config).fusion_rules or []
    assert rule.type is IncidentType.GAS_RELEASE
    assert (rule.window_s, rule.radius_m, rule.resolve_on) == (300, 80, "all")
    assert INCIDENTS.section(REGISTRY.load_config(None, env={})[0]).fusion_rules is None
    assert len(DEFAULT_RULES) >= 8


@pytest.mark.parametrize(
    ("right", "wrong"),
    [
        ("      resolve_on: all\n", "      resolve_on: sometimes\n"),
        ("      window_s: 300\n", "      window_s: -5\n"),
        ("      radius_m: 80\n", "      radius_m: 80\n      colour: red\n"),
    ],
)
def test_a_wrong_fusion_rule_stops_start_up_naming_file_line_and_key(
    tmp_path: Path, right: str, wrong: str
) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(GOOD.replace(right, wrong), encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        REGISTRY.load_config(path, env={})
    message = str(refused.value)
    assert str(path) in message
    assert "incidents.fusion_rules[0]" in message
    assert refused.value.line is not None
