"""Alerts as devices of their own: the alarm engine places `am-<fingerprint>` at its site, and
the rules watch them by an `infra.` kind, which no device of the site files measures."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.alarms.domain.model import ConditionType
from services.alarms.domain.rules import DeviceRef
from services.alarms.rule_loader import load_rule_set
from services.alarms.rules_reload import device_lookup
from services.common.errors import ConfigError
from services.common.sites import SiteRegistry
from services.common.sites.alert_devices import alert_device, is_alert_device
from tests.conftest import DEMO_SITES, REPO

REGISTRY = SiteRegistry.load([DEMO_SITES])
RULE = """\
version: 1
rules:
  - id: infra
    selector: {selector}
    condition: high
    setpoint: 0.5
    priority: medium
    class: system
    rationale:
      cause: {{ko: "경보", en: "alert"}}
      consequence: {{ko: "상실", en: "loss"}}
      action: {{ko: "확인", en: "check"}}
      time_to_respond_s: 900
"""


def test_an_alert_device_is_placed_at_its_site_for_its_tenant_only() -> None:
    lookup = device_lookup(REGISTRY)
    device = alert_device("3f1a4c2b9d8e7f60")

    assert lookup("ulsan-refining", "ulsan-refinery", device) == (
        DeviceRef("ulsan-refinery", "", "alert", device),
        (),
    )
    assert lookup("mipo-petrochem", "ulsan-refinery", device) is None  # another tenant's site
    assert lookup("ulsan-refining", "ulsan-refinery", "am-not-a-fingerprint") is None
    assert not is_alert_device("gd-cdu1-101")


def test_the_shipped_infra_alert_rule_watches_every_alert() -> None:
    rules = load_rule_set([REPO / "sites" / "alarms" / "ulsan-demo.yaml"], REGISTRY)
    ref = DeviceRef("ulsan-refinery", "", "alert", alert_device("00000000000000ff"))

    (rule,) = rules.resolve(ref, "infra.alert")

    assert (rule.id, rule.condition, rule.setpoint) == ("infra-alert", ConditionType.HIGH, 0.5)


def test_an_infra_rule_narrowed_to_what_alerts_lack_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULE.format(selector="{kind: infra.alert, site: ulsan-refinery}"))
    assert load_rule_set([path], REGISTRY).rules

    path.write_text(RULE.format(selector="{kind: infra.alert, zone: sru}"))
    with pytest.raises(ConfigError, match=r"no device measures `infra\.alert`"):
        load_rule_set([path], REGISTRY)
