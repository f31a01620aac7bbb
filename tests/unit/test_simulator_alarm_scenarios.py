"""The demo's alarm scenarios, run through the pure alarm domain with the shipped rules: the
alarms an operator of the demo refinery would see really happen (set-points, deadbands, delays,
voting groups and quality thresholds of sites/alarms/ulsan-demo.yaml)."""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.alarms.domain.kpis import PER_HOUR
from services.alarms.domain.quality import CHATTER_TRANSITIONS, CHATTER_WINDOW, FLOOD_BEGINS_ABOVE
from services.alarms.domain.rules import RuleSet
from services.alarms.rule_loader import load_rule_set
from services.common.sites.registry import SiteRegistry
from services.simulator import alarm_scenarios
from services.simulator.plant import PlantSimulator, ScenarioConfig
from tests.unit.alarm_replay import AlarmReplay

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
SITE = "ulsan-refinery"
# Only what a test asks for: the plant's random upsets and the other scenarios off.
OFF = {
    "release_first_s": math.inf,
    "vibration_first_s": math.inf,
    "fault_first_s": math.inf,
    "gas_release_first_s": math.inf,
    "chatter_first_s": math.inf,
    "power_dip_first_s": math.inf,
}


@functools.cache
def demo() -> tuple[SiteRegistry, RuleSet]:
    registry = SiteRegistry.load([REPO / "sites" / "ulsan-demo.yaml"])
    return registry, load_rule_set([REPO / "sites" / "alarms" / "ulsan-demo.yaml"], registry)


def replay(seconds: int, **scenario: float) -> tuple[AlarmReplay, PlantSimulator]:
    """The refinery's alarms over `seconds` of one-second ticks with the scenario asked for."""
    registry, rules = demo()
    sim = PlantSimulator(registry, scenarios=ScenarioConfig(**{**OFF, **scenario}))
    alarms = AlarmReplay(registry, rules, SITE, T0)
    for s in range(seconds + 1):
        now = T0 + timedelta(seconds=s)
        alarms.feed(now, sim.tick(now)[SITE])
    return alarms, sim


def in_zone(alarm_ids: set[str], zone: str) -> set[str]:
    registry, _ = demo()
    return {a for a in alarm_ids if (d := registry.device(SITE, a.split("--")[0])) and d.zone == zone}


def test_a_gas_release_in_fcc_2_is_confirmed_2oo3_with_a_stale_member_and_the_camera() -> None:
    registry, rules = demo()
    group = next(g for g in rules.groups_of(SITE) if g.id == "fcc2-lel-2oo3")
    sim = PlantSimulator(registry, scenarios=ScenarioConfig(**{**OFF, "gas_release_first_s": 20.0}))
    alarms = AlarmReplay(registry, rules, SITE, T0)
    verdicts = []
    for s in range(261):  # the release runs 20 s .. 170 s; then everything settles
        now = T0 + timedelta(seconds=s)
        alarms.feed(now, sim.tick(now)[SITE])
        verdicts.append((s, alarms.verdict(group)))

    # What the operator sees in the zone: the two LEL high alarms (not high-high: the peaks stay
    # under 40 %LEL), the silent detector's communication loss on both its gases, the camera's smoke.
    assert in_zone(alarms.activated(), "fcc-2") == {
        "gd-fcc2-201--lel-high",
        "gd-fcc2-203--lel-high",
        "gd-fcc2-204--gas-lel-stale",
        "gd-fcc2-204--gas-h2s-stale",
        "cam-fcc2-201--camera-smoke",
    }
    # 2oo3 confirmed by the two detectors in alarm. While all three answer it takes both; once
    # the silent one is stale, policy `degrade` makes the group 1oo2 of the two left, so it stays
    # confirmed on gd-fcc2-201 alone as the weaker reading at gd-fcc2-203 fades first.
    confirmed = [(s, v) for s, v in verdicts if v.confirmed]
    both = ("gd-fcc2-201", "gd-fcc2-203")
    assert [v.active for _, v in confirmed if not v.unreadable] and all(
        v.active == both for _, v in confirmed if not v.unreadable
    )
    assert any(v.active == both and v.unreadable == ("gd-fcc2-204",) for _, v in confirmed)
    assert {v.required for _, v in confirmed} == {2, 1}
    # Not confirmed before the release, and no longer once it is over.
    assert all(s >= 20 for s, _ in confirmed) and not verdicts[-1][1].confirmed
    # The stale alarm comes 30 s after the detector's last reading: it fell silent 10 s into the
    # release (at 30 s), so its last reading was the tick before (29 s), and 29 + 30 = 59 s.
    stale = next(t for t in alarms.activations if t.point.alarm_id == "gd-fcc2-204--gas-lel-stale")
    assert stale.at == T0 + timedelta(seconds=20 + alarm_scenarios.SILENT_AFTER_S - 1 + 30)
    # After the release every condition has cleared: the alarms wait unacknowledged (RTNUN).
    for alarm_id in ("gd-fcc2-201--lel-high", "gd-fcc2-203--lel-high", "gd-fcc2-204--gas-lel-stale"):
        device, rule = alarm_id.split("--")
        assert not alarms.active(device, rule)


def test_the_camera_reports_detections_with_confidence_and_the_silent_detector_sends_nothing() -> None:
    registry, _ = demo()
    sim = PlantSimulator(registry, scenarios=ScenarioConfig(**{**OFF, "gas_release_first_s": 0.0}))
    for s in range(60):
        out = sim.tick(T0 + timedelta(seconds=s))[SITE]
    smoke = next(r for r in out if r["device"] == "cam-fcc2-201" and r["kind"] == "video.smoke")
    assert "value" not in smoke and 0.6 <= float(smoke["confidence"]) <= 0.9  # type: ignore[arg-type]
    assert not [r for r in out if r["device"] == "gd-fcc2-204"]
    assert [u.kind for u in sim.upsets(T0 + timedelta(seconds=59))] == ["gas_release"]


def test_the_pump_chatters_more_than_5_transitions_in_5_minutes() -> None:
    alarms, _ = replay(420, chatter_first_s=30.0)

    pump = "vt-p101a--vibration-high"
    times = [
        t.at for t in alarms.transitions if t.point.alarm_id == pump and t.at >= T0 + timedelta(seconds=30)
    ]
    # Raised 10 s into each of five swings and cleared 30 s after each swing down: ten
    # transitions, all within 5 minutes of the first.
    assert len(times) >= 2 * 5
    assert times[CHATTER_TRANSITIONS] - times[0] <= CHATTER_WINDOW
    assert pump in alarms.chattering
    # The swings stay short of the high-high (4.5 mm/s).
    assert "vt-p101a--vibration-high-high" not in alarms.activated()


def test_a_power_dip_floods_the_site_with_fault_alarms_that_clear_after() -> None:
    alarms, _ = replay(150, power_dip_first_s=60.0)

    dip = T0 + timedelta(seconds=60)
    faults = [t for t in alarms.activations if t.point.rule.endswith("-fault") and t.at >= dip]
    # Every detector that lost power raised its fault alarm after the 5 s on-delay.
    assert len(faults) > FLOOD_BEGINS_ABOVE
    assert {t.at for t in faults} == {dip + timedelta(seconds=5)}
    began = [f for f in alarms.floods if f.began]
    assert began and dip <= began[0].at <= dip + timedelta(seconds=10)
    assert began[0].count > FLOOD_BEGINS_ABOVE
    # Power is back: the faults have cleared (their alarms wait for an acknowledgement).
    assert not any(alarms.active(t.point.device, t.point.rule) for t in faults)


def test_the_default_demo_runs_each_scenario_once_in_turn_and_only_at_the_refinery() -> None:
    registry, _ = demo()
    sim = PlantSimulator(registry)
    sim.tick(T0)
    scripted = {"gas_release", "chatter", "power_dip"}

    def kinds(seconds: float) -> set[tuple[str, str]]:
        return {(u.kind, u.site) for u in sim.upsets(T0 + timedelta(seconds=seconds)) if u.kind in scripted}

    cfg = ScenarioConfig()
    assert kinds(cfg.gas_release_first_s + 1) == {("gas_release", SITE)}
    assert kinds(cfg.chatter_first_s + 1) == {("chatter", SITE)}
    assert kinds(cfg.power_dip_first_s + 1) == {("power_dip", SITE)}
    assert kinds(cfg.power_dip_first_s + cfg.power_dip_s + 1) == set()


@pytest.mark.parametrize("name", ["gas_release_period_s", "chatter_period_s", "power_dip_period_s"])
def test_scenario_periods_must_be_positive(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ScenarioConfig(**{name: 0.0})


def replay_sites(seconds: int, step_s: int, cfg: ScenarioConfig) -> dict[str, AlarmReplay]:
    """Every demo site's alarms over `seconds`, one tick every `step_s`."""
    registry, rules = demo()
    sim = PlantSimulator(registry, scenarios=cfg)
    alarms = {site.id: AlarmReplay(registry, rules, site.id, T0) for site in registry.sites}
    for s in range(0, seconds + 1, step_s):
        now = T0 + timedelta(seconds=s)
        for site_id, readings in sim.tick(now).items():
            alarms[site_id].feed(now, readings)
    return alarms


def test_the_demo_plants_at_rest_raise_no_alarm_at_all() -> None:
    # Half an hour of normal operation everywhere: no standing pump vibration, no gas, nothing
    # for an operator to look at.
    alarms = replay_sites(1800, 1, ScenarioConfig(**OFF))
    assert {site: replay.activated() for site, replay in alarms.items()} == {site: set() for site in alarms}


def test_the_random_upsets_give_few_meaningful_alarms_and_never_a_high_high() -> None:
    # An hour of the demo's background (the scripted scenarios off), each site's leak, rough
    # pump and detector fault brought forward into it.
    early = {"release_first_s": 30.0, "vibration_first_s": 60.0, "fault_first_s": 120.0}
    cfg = ScenarioConfig(**{**OFF, **early})
    alarms = replay_sites(3600, 1, cfg)
    activated = {alarm_id: site for site, replay in alarms.items() for alarm_id in replay.activated()}
    rules = {alarm_id.split("--")[1] for alarm_id in activated}
    # The leaks are seen: past the gas high alarms, at the plants and, diluted, at the fence line.
    assert {"h2s-high", "lel-high", "h2s-high-fenceline"} <= rules
    assert {activated[a] for a in activated if "h2s" in a or "lel" in a} == set(alarms)
    # The rough pump is seen.
    assert any(rule.startswith("vibration-high") for rule in rules)
    # No high-high, hence no emergency: those are left to a real release.
    assert not [rule for rule in rules if "high-high" in rule]
    # Few: one leak, one rough pump and one fault in the hour at each site stay inside ISA-18.2's
    # ~6 alarms an hour for one operator (at most 12); no chattering, no flood.
    for site, replay in alarms.items():
        shown = [t.point.alarm_id for t in replay.activations]
        assert len(shown) <= PER_HOUR.maximum, (site, shown)
        assert not replay.chattering and not replay.floods, site
