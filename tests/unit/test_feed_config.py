"""The `feed:` config section: sharing policies declared per tenant and site, refused at start-up
with file, line and key when they name an unknown level or field or a grid not above zero."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import ConfigError
from services.feed.app import FEED
from services.feed.domain.policy import Kind, Level
from services.hub.registry import REGISTRY

GOOD = """\
feed:
  policies:
    - tenant: ulsan-refining
      site: ulsan-refinery
      level: redacted
      fields: {incident: [type, severity, location]}
      grid_m: 250
      delay_s: 60
  ngsi:
    url: http://broker.city.example:1026
    tenant: ulsan
"""


def test_declared_policies_are_read_with_their_fields(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(GOOD, encoding="utf-8")
    config, _ = REGISTRY.load_config(path, env={})
    section = FEED.section(config)
    [policy] = section.policies
    assert (policy.tenant, policy.site, policy.level) == ("ulsan-refining", "ulsan-refinery", Level.REDACTED)
    assert policy.allowed(Kind.INCIDENT) == {"id", "type", "severity", "location"}
    assert (policy.grid_m, policy.delay_s) == (250, 60)
    assert section.ngsi is not None and section.ngsi.tenant == "ulsan"
    assert FEED.section(REGISTRY.load_config(None, env={})[0]).policies == []


@pytest.mark.parametrize(
    ("right", "wrong"),
    [
        ("      level: redacted\n", "      level: public\n"),
        ("[type, severity, location]", "[type, device_id]"),
        ("      grid_m: 250\n", "      grid_m: 0\n"),
        ("      grid_m: 250\n", "      grid_m: -100\n"),
        ("      delay_s: 60\n", "      delay_s: 60\n      colour: red\n"),
    ],
)
def test_a_wrong_policy_stops_start_up_naming_file_line_and_key(
    tmp_path: Path, right: str, wrong: str
) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text(GOOD.replace(right, wrong), encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        REGISTRY.load_config(path, env={})
    message = str(refused.value)
    assert str(path) in message
    assert "feed.policies[0]" in message
    assert refused.value.line is not None
