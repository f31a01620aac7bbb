"""Alarm rule files: strict loading, every check against the site registry with file, line and key,
and the shipped defaults for the demo sites."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from services.alarms.domain.model import AlarmClass, ConditionType
from services.alarms.domain.rules import DeviceRef, FaultPolicy, RuleSet
from services.alarms.rule_loader import load_rule_set
from services.common.errors import ConfigError
from services.common.sites import SiteRegistry

REPO = Path(__file__).resolve().parents[2]

SITES = """\
version: 1
tenants:
  - {id: acme, name: "Acme"}
sites:
  - id: alpha
    tenant: acme
    name: "Alpha"
    kind: plant
    timezone: Asia/Seoul
    location: {lat: 35.47, lon: 129.35}
    zones:
      - {id: z1, name: "Zone 1", hazard: toxic, polygon: [[35.0, 129.0], [35.1, 129.0], [35.1, 129.1]]}
      - {id: z2, name: "Zone 2", hazard: toxic, polygon: [[35.0, 129.0], [35.1, 129.0], [35.1, 129.1]]}
    devices:
      - id: gd-1
        zone: z1
        type: gas_detector
        position: {lat: 35.05, lon: 129.05}
        measures:
          - {kind: gas.h2s, unit: ppm, range: [0, 100]}
          - {kind: gas.lel, unit: "%LEL", range: [0, 100]}
      - id: gd-2
        zone: z1
        type: gas_detector
        position: {lat: 35.05, lon: 129.05}
        measures: [{kind: gas.h2s, unit: ppm, range: [0, 50]}]
      - id: gd-3
        zone: z2
        type: gas_detector
        position: {lat: 35.05, lon: 129.05}
        measures: [{kind: gas.h2s, unit: ppm, range: [0, 100]}]
      - id: gd-x
        zone: z2
        type: gas_detector
        position: {lat: 35.05, lon: 129.05}
        measures: [{kind: gas.h2s, unit: ppm, range: [0, 100]}]
      - id: pt-1
        zone: z2
        type: pressure
        position: {lat: 35.05, lon: 129.05}
        measures: [{kind: pressure, unit: kPa}]
  - id: beta
    tenant: acme
    name: "Beta"
    kind: plant
    timezone: Asia/Seoul
    location: {lat: 35.47, lon: 129.35}
    zones:
      - {id: z9, name: "Zone 9", hazard: toxic, polygon: [[35.0, 129.0], [35.1, 129.0], [35.1, 129.1]]}
    devices:
      - id: gd-9
        zone: z9
        type: gas_detector
        position: {lat: 35.05, lon: 129.05}
        measures: [{kind: gas.h2s, unit: ppm, range: [0, 100]}]
      - id: gd-x
        zone: z9
        type: gas_detector
        position: {lat: 35.05, lon: 129.05}
        measures: [{kind: gas.h2s, unit: ppm, range: [0, 100]}]
"""

WHY = """\
    rationale:
      cause: {ko: 원인, en: cause}
      consequence: {ko: 결과, en: consequence}
      action: {ko: 조치, en: action}
      time_to_respond_s: 60
"""

# A valid file; the tests below break one thing each and find its line by a marker text.
RULES = f"""\
version: 1
class_limits:
  safety: {{max_shelve_s: 3600}}
rules:
  - id: h2s-high
    selector: {{kind: gas.h2s}}
    condition: high
    setpoint: 10
    deadband: 1
    priority: high
    class: safety
{WHY}  - id: h2s-high-high
    selector: {{kind: gas.h2s}}
    condition: high_high
    setpoint: 20
    priority: emergency
    class: safety
    latching: true
{WHY}  - id: gd1-high
    selector: {{kind: gas.h2s, device: gd-1, site: alpha}}
    condition: high
    setpoint: 5
    priority: high
    class: safety
{WHY}  - id: h2s-stale
    selector: {{kind: gas.h2s, device_type: gas_detector}}
    condition: stale
    stale_s: 30
    priority: medium
    class: system
{WHY}voting_groups:
  - id: z1-h2s
    site: alpha
    members:
      - {{device: gd-1, rule: gd1-high}}
      - {{device: gd-2, kind: gas.h2s}}
      - {{device: gd-3}}
    m: 2
    policy: degrade
    priority: emergency
    class: safety
{WHY}"""


@pytest.fixture
def registry(tmp_path: Path) -> SiteRegistry:
    path = tmp_path / "sites.yaml"
    path.write_text(SITES, encoding="utf-8")
    return SiteRegistry.load([path])


def load(tmp_path: Path, registry: SiteRegistry, *texts: str) -> RuleSet:
    paths = []
    for i, text in enumerate(texts):
        path = tmp_path / f"rules{i}.yaml"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return load_rule_set(paths, registry)


def refused(tmp_path: Path, registry: SiteRegistry, *texts: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, registry, *texts)
    return info.value


def line_of(text: str, marker: str, after: str = "") -> int:
    """1-based line of the first `marker` after the first `after`."""
    start = text.index(after) + len(after)
    return text[: text.index(marker, start)].count("\n") + 1


def test_the_valid_file_loads_into_domain_rules_and_groups(tmp_path: Path, registry: SiteRegistry) -> None:
    rules = load(tmp_path, registry, RULES)
    gd1 = DeviceRef("alpha", "z1", "gas_detector", "gd-1")
    assert [(r.id, r.setpoint) for r in rules.resolve(gd1, "gas.h2s")] == [
        ("gd1-high", 5.0),
        ("h2s-high-high", 20.0),
        ("h2s-stale", None),
    ]
    stale = rules.index.rule("h2s-stale")
    assert stale is not None and stale.stale_after == timedelta(seconds=30)
    assert rules.index.rule("h2s-high-high").latching is True  # type: ignore[union-attr]
    (group,) = rules.groups_of("alpha")
    assert rules.groups_with("alpha", "gd-3") == (group,)
    assert rules.groups_with("beta", "gd-3") == ()
    assert (group.m, group.n, group.fault_policy) == (2, 3, FaultPolicy.DEGRADE)
    assert rules.class_limits.max_shelve_of(AlarmClass.SAFETY) == timedelta(hours=1)
    assert rules.class_limits.max_shelve_of(AlarmClass.EQUIPMENT) == timedelta(hours=72)  # default


# --- what the types reject ---


def test_an_unknown_key_is_refused_with_its_line(tmp_path: Path, registry: SiteRegistry) -> None:
    text = RULES.replace("    deadband: 1\n", "    deadband: 1\n    dedband: 1\n", 1)
    err = refused(tmp_path, registry, text)
    assert (err.file, err.line, err.key) == (str(tmp_path / "rules0.yaml"), 10, "rules[0].dedband")
    assert "unknown field" in err.message


def test_an_unknown_condition_or_priority_is_refused(tmp_path: Path, registry: SiteRegistry) -> None:
    err = refused(tmp_path, registry, RULES.replace("condition: high\n", "condition: higher\n", 1))
    assert (err.line, err.key) == (7, "rules[0].condition")
    err = refused(tmp_path, registry, RULES.replace("priority: high\n", "priority: urgent\n", 1))
    assert (err.line, err.key) == (10, "rules[0].priority")


def test_an_unknown_device_type_is_refused(tmp_path: Path, registry: SiteRegistry) -> None:
    err = refused(tmp_path, registry, RULES.replace("device_type: gas_detector", "device_type: gas_sniffer"))
    assert (err.line, err.key) == (line_of(RULES, "device_type"), "rules[3].selector.device_type")


# --- the fields each condition takes ---


def test_a_level_rule_needs_a_setpoint(tmp_path: Path, registry: SiteRegistry) -> None:
    err = refused(tmp_path, registry, RULES.replace("    setpoint: 10\n", "", 1))
    assert (err.line, err.key) == (5, "rules[0].setpoint")
    assert err.message == "a `high` rule needs `setpoint`"


def test_a_field_the_condition_does_not_use_is_refused(tmp_path: Path, registry: SiteRegistry) -> None:
    err = refused(
        tmp_path, registry, RULES.replace("    stale_s: 30\n", "    stale_s: 30\n    deadband: 2\n")
    )
    line = line_of(RULES, "stale_s") + 1
    assert (err.line, err.key) == (line, "rules[3].deadband")
    assert err.message == "`deadband` does not apply to a `stale` rule (it takes `stale_s`)"


def test_persistence_of_several_detections_needs_a_window(tmp_path: Path, registry: SiteRegistry) -> None:
    text = RULES.replace(
        "    condition: stale\n    stale_s: 30\n",
        "    condition: detection\n    min_confidence: 0.5\n    persistence: {count: 3, window_s: 0}\n",
    )
    err = refused(tmp_path, registry, text)
    assert (err.line, err.key) == (line_of(text, "persistence"), "rules[3].persistence.window_s")


# --- ids ---


def test_a_duplicate_rule_id_names_both_places(tmp_path: Path, registry: SiteRegistry) -> None:
    other = "version: 1\nrules:\n" + RULES.partition("rules:\n")[2].partition("  - id: h2s-high-high")[0]
    other = other.replace("setpoint: 10", "setpoint: 12").replace(
        "kind: gas.h2s}", "kind: gas.h2s, zone: z1}"
    )
    err = refused(tmp_path, registry, RULES, other)
    assert (err.file, err.line, err.key) == (str(tmp_path / "rules1.yaml"), 3, "rules[0].id")
    assert err.message == f"duplicate rule id `h2s-high` (first at {tmp_path / 'rules0.yaml'}:5)"


def test_a_class_limit_set_in_two_files_is_refused(tmp_path: Path, registry: SiteRegistry) -> None:
    other = "version: 1\nclass_limits:\n  safety: {max_shelve_s: 7200}\n"
    err = refused(tmp_path, registry, RULES, other)
    assert (err.line, err.key) == (3, "class_limits.safety")
    assert err.message.startswith("duplicate class limit `safety`")


def test_two_rules_for_one_selector_and_condition_are_refused(tmp_path: Path, registry: SiteRegistry) -> None:
    text = RULES.replace(
        "  - id: h2s-high-high",
        "  - id: h2s-high-2\n"
        + RULES.split("  - id: h2s-high\n")[1].split("  - id: h2s-high-high", maxsplit=1)[0]
        + "  - id: h2s-high-high",
    )
    err = refused(tmp_path, registry, text)
    assert (err.line, err.key) == (line_of(text, "selector", "- id: h2s-high-2"), "rules[1].selector")
    assert (
        err.message == "duplicate rule for this selector and condition `high` on `gas.h2s` (first at line 6)"
    )


# --- references into the site registry ---


@pytest.mark.parametrize(
    ("selector", "key", "message"),
    [
        ("{kind: gas.h2s, site: gamma}", "site", "unknown site `gamma`"),
        ("{kind: gas.h2s, device: gd-7}", "device", "unknown device `gd-7`"),
        ("{kind: gas.h2s, device: gd-9, site: alpha}", "device", "unknown device `gd-9` in site `alpha`"),
        (
            "{kind: gas.h2s, device: gd-x}",
            "device",
            "device `gd-x` is in several sites (alpha, beta): name the one meant in `site`",
        ),
        ("{kind: gas.h2s, zone: z7}", "zone", "unknown zone `z7`"),
        ("{kind: gas.co}", "kind", "no device measures `gas.co`"),
        ("{kind: gas.lel, zone: z2}", "kind", "no device matching this selector measures `gas.lel`"),
        (
            "{kind: gas.h2s, device_type: camera}",
            "kind",
            "no device matching this selector measures `gas.h2s`",
        ),
    ],
)
def test_a_rule_naming_what_the_registry_lacks_is_refused(
    tmp_path: Path, registry: SiteRegistry, selector: str, key: str, message: str
) -> None:
    text = RULES.replace("{kind: gas.h2s, device_type: gas_detector}", selector)
    err = refused(tmp_path, registry, text)
    assert (err.line, err.key, err.message) == (
        line_of(text, "selector", "h2s-stale"),
        f"rules[3].selector.{key}",
        message,
    )


def test_a_device_setpoint_outside_its_range_is_refused(tmp_path: Path, registry: SiteRegistry) -> None:
    err = refused(tmp_path, registry, RULES.replace("setpoint: 5\n", "setpoint: 150\n"))
    assert (err.line, err.key) == (line_of(RULES, "setpoint: 5"), "rules[2].setpoint")
    assert (
        err.message
        == "set-point 150 is outside the range [0, 100] ppm of `gas.h2s` on device `gd-1` (site `alpha`)"
    )


def test_a_kind_setpoint_is_checked_against_every_matching_device(
    tmp_path: Path, registry: SiteRegistry
) -> None:
    # 60 ppm fits most detectors but not gd-2, calibrated 0-50 ppm.
    text = RULES.replace("setpoint: 20\n", "setpoint: 60\n")
    err = refused(tmp_path, registry, text)
    assert (err.line, err.key) == (line_of(RULES, "setpoint: 20"), "rules[1].setpoint")
    assert "[0, 50] ppm of `gas.h2s` on device `gd-2`" in err.message


def test_a_deadband_that_would_never_clear_is_refused(tmp_path: Path, registry: SiteRegistry) -> None:
    # gd-1's high of 5 ppm with a deadband of 6 would need -1 ppm to clear: it never would.
    text = RULES.replace("setpoint: 5\n", "setpoint: 5\n    deadband: 6\n")
    err = refused(tmp_path, registry, text)
    assert (err.line, err.key) == (line_of(text, "deadband: 6"), "rules[2].deadband")
    assert err.message == (
        "with deadband 6 the alarm would clear at -1, outside the range [0, 100] ppm of `gas.h2s` "
        "on device `gd-1` (site `alpha`), so it could never clear"
    )


def test_a_high_not_below_its_high_high_is_refused(tmp_path: Path, registry: SiteRegistry) -> None:
    err = refused(tmp_path, registry, RULES.replace("setpoint: 10\n", "setpoint: 25\n"))
    assert (err.line, err.key) == (line_of(RULES, "setpoint: 10"), "rules[0].setpoint")
    assert err.message.startswith(
        "the high set-point (25, rule `h2s-high`) must be below "
        "the high-high set-point (20, rule `h2s-high-high`)"
    )


def test_a_device_override_breaking_the_order_is_blamed(tmp_path: Path, registry: SiteRegistry) -> None:
    # The kind-wide pair is fine; gd-1's own high of 30 lies above the high-high it inherits.
    err = refused(tmp_path, registry, RULES.replace("setpoint: 5\n", "setpoint: 30\n"))
    assert (err.line, err.key) == (line_of(RULES, "setpoint: 5"), "rules[2].setpoint")
    at = line_of(RULES, "- id: h2s-high-high")
    assert f"on device `gd-1` (site `alpha`); rule `h2s-high-high` is at line {at}" in err.message


def test_a_low_not_above_its_low_low_is_refused(tmp_path: Path, registry: SiteRegistry) -> None:
    text = RULES.replace("condition: high\n", "condition: low\n", 1).replace(
        "condition: high_high", "condition: low_low"
    )
    text = text.replace("setpoint: 5\n", "setpoint: 25\n")  # keep gd-1's override a valid low
    text = text.replace("condition: high\n", "condition: low\n", 1)
    err = refused(tmp_path, registry, text)
    assert (err.line, err.key) == (line_of(RULES, "setpoint: 10"), "rules[0].setpoint")
    assert err.message.startswith(
        "the low-low set-point (20, rule `h2s-high-high`) must be below "
        "the low set-point (10, rule `h2s-high`)"
    )


# --- voting groups ---


@pytest.mark.parametrize(
    ("member", "key", "message"),
    [
        ("{device: gd-7}", "device", "unknown device `gd-7` in site `alpha`"),
        ("{device: gd-9}", "device", "device `gd-9` belongs to site `beta`, not `alpha`"),
        ("{device: gd-3, kind: gas.lel}", "kind", "device `gd-3` does not measure `gas.lel`"),
        ("{device: gd-3, rule: h2s-low}", "rule", "unknown rule `h2s-low`"),
        (
            "{device: gd-3, rule: gd1-high}",
            "rule",
            "rule `gd1-high` does not watch device `gd-3` (it does not match, or a more specific rule "
            "replaces it there)",
        ),
        ("{device: pt-1}", "device", "no rule watches device `pt-1`, so it could never vote"),
        ("{device: gd-2, kind: gas.h2s}", "device", "duplicate device `gd-2` (first at line 56)"),
        ("{device: gd-1, kind: gas.lel}", "device", "duplicate device `gd-1` (first at line 55)"),
        (
            "{device: gd-3, rule: h2s-stale}",
            "rule",
            "rule `h2s-stale` is a `stale` rule: a member votes with its process alarms, and the "
            "group's `policy` says how a stale or faulty member counts",
        ),
    ],
)
def test_a_voting_member_the_registry_or_rules_lack_is_refused(
    tmp_path: Path, registry: SiteRegistry, member: str, key: str, message: str
) -> None:
    text = RULES.replace("{device: gd-3}", member)
    err = refused(tmp_path, registry, text)
    path = "voting_groups[0].members[2]" + (f".{key}" if key else "")
    assert (err.line, err.key, err.message) == (
        line_of(text, member, "- {device: gd-2, kind: gas.h2s}"),
        path,
        message,
    )


@pytest.mark.parametrize("m", [0, 4])
def test_m_must_be_between_1_and_n(tmp_path: Path, registry: SiteRegistry, m: int) -> None:
    err = refused(tmp_path, registry, RULES.replace("    m: 2\n", f"    m: {m}\n"))
    assert (err.line, err.key) == (line_of(RULES, "    m: 2"), "voting_groups[0].m")
    assert err.message == f"m must be between 1 and the 3 members, got {m}"


def test_a_voting_group_of_an_unknown_site_is_refused(tmp_path: Path, registry: SiteRegistry) -> None:
    err = refused(tmp_path, registry, RULES.replace("    site: alpha\n", "    site: gamma\n"))
    assert (err.line, err.key, err.message) == (
        line_of(RULES, "site: alpha\n"),
        "voting_groups[0].site",
        "unknown site `gamma`",
    )


def test_rules_are_refused_when_the_registry_loses_a_device(tmp_path: Path) -> None:
    # Rules are checked against the registry in use: a reload of either must check both again.
    sites = tmp_path / "sites.yaml"
    head, _, tail = SITES.partition("      - id: gd-2\n")
    sites.write_text(head + "      - id: gd-2b\n" + tail, encoding="utf-8")
    err = refused(tmp_path, SiteRegistry.load([sites]), RULES)
    assert (err.key, err.message) == (
        "voting_groups[0].members[1].device",
        "unknown device `gd-2` in site `alpha`",
    )


# --- the shipped defaults ---

DEMO_SITES = REPO / "sites" / "ulsan-demo.yaml"
DEMO_RULES = sorted((REPO / "sites" / "alarms").glob("*.yaml"))


@pytest.fixture(scope="module")
def demo() -> tuple[SiteRegistry, RuleSet]:
    registry = SiteRegistry.load([DEMO_SITES])
    return registry, load_rule_set(DEMO_RULES, registry)


def test_the_shipped_rules_validate_against_the_shipped_sites(demo: tuple[SiteRegistry, RuleSet]) -> None:
    registry, rules = demo
    assert DEMO_RULES and len(rules.rules) >= 40
    for site in registry.sites:
        for device in site.devices:
            ref = DeviceRef(site.id, device.zone, device.type, device.id)
            if device.type == "camera":
                # Its condition is watched through its health, not through silence.
                assert "video.camera_health" in {m.kind for m in device.measures}, device.id
            for measure in device.measures:
                conditions = {r.condition for r in rules.resolve(ref, measure.kind)}
                if device.type == "camera":
                    # A camera publishes a detection only when its rule fires: silence is normal,
                    # so no detection kind has a comm-loss rule; its health has a high alarm.
                    if measure.kind == "video.camera_health":
                        assert conditions == {ConditionType.HIGH}, device.id
                    else:
                        assert ConditionType.DETECTION in conditions, (device.id, measure.kind)
                        assert ConditionType.STALE not in conditions, (device.id, measure.kind)
                elif device.type in {"gas_detector", "flame_detector", "heat_detector", "vibration"}:
                    # Every safety detector and machine sensor has an alarm, a comm-loss
                    # and a fault rule.
                    assert {ConditionType.STALE, ConditionType.BAD_QUALITY} < conditions, (
                        device.id,
                        measure.kind,
                    )


def _setpoints(rules: RuleSet, ref: DeviceRef, kind: str) -> dict[str, float | None]:
    return {r.condition.value: r.setpoint for r in rules.resolve(ref, kind) if r.setpoint is not None}


def test_the_shipped_gas_setpoints_follow_the_references(demo: tuple[SiteRegistry, RuleSet]) -> None:
    _, rules = demo
    fcc = DeviceRef("ulsan-refinery", "fcc-2", "gas_detector", "gd-fcc2-203")
    assert _setpoints(rules, fcc, "gas.h2s") == {"high": 10, "high_high": 20}
    assert _setpoints(rules, fcc, "gas.lel") == {"high": 20, "high_high": 40}
    co = DeviceRef("ulsan-refinery", "fcc-2", "gas_detector", "gd-fcc2-202")
    assert _setpoints(rules, co, "gas.co") == {"high": 35, "high_high": 70}
    assert _setpoints(rules, co, "gas.o2") == {"low": 19.5, "low_low": 18, "high": 23.5}
    fence = DeviceRef("yeocheon-fenceline", "yeocheon-edge", "gas_detector", "gd-yc-01")
    assert _setpoints(rules, fence, "gas.h2s") == {"high": 1, "high_high": 10}


def test_the_shipped_vibration_limits_follow_iso_10816_3(demo: tuple[SiteRegistry, RuleSet]) -> None:
    _, rules = demo
    pump = DeviceRef("ulsan-refinery", "cdu-1", "vibration", "vt-p101a")
    compressor = DeviceRef("ulsan-refinery", "fcc-2", "vibration", "vt-c201")
    same_tag_other_site = DeviceRef("mipo-aromatics", "cracker-furnaces", "vibration", "vt-c201")
    assert _setpoints(rules, pump, "vibration") == {"high": 2.8, "high_high": 4.5, "rate_of_rise": 1}
    assert _setpoints(rules, compressor, "vibration") == {"high": 4.5, "high_high": 7.1, "rate_of_rise": 1}
    assert _setpoints(rules, same_tag_other_site, "vibration") == {
        "high": 4.5,
        "high_high": 7.1,
        "rate_of_rise": 1,
    }


def test_the_shipped_voting_groups(demo: tuple[SiteRegistry, RuleSet]) -> None:
    registry, rules = demo
    groups = {g.id: g for g in rules.voting_groups}
    gas = groups["fcc2-lel-2oo3"]
    assert (gas.m, gas.n) == (2, 3)
    assert {registry.device("ulsan-refinery", m.device).zone for m in gas.members} == {"fcc-2"}  # type: ignore[union-attr]
    fire = groups["t501-fire-2oo3"]
    types = {registry.device(fire.site, m.device).type for m in fire.members}  # type: ignore[union-attr]
    assert types == {"flame_detector", "heat_detector", "camera"}
    assert all(g.rationale.action.ko and g.rationale.action.en for g in groups.values())
